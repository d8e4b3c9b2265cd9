"""Resources: Kosmos field names, defaults, normalisation, validation with clear messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from clusterlink.api import Cluster, ClusterNode, NodeConfig
from clusterlink.api.manifest import ManifestError, load_manifest, parse_documents

FIXTURES = Path(__file__).parents[2] / "fixtures"


def cluster_doc(link: str = "{}", name: str = "c1") -> str:
    return (
        "apiVersion: kosmos.io/v1alpha1\nkind: Cluster\n"
        f"metadata: {{name: {name}}}\nspec: {{clusterLinkOptions: {link}}}\n"
    )


def test_defaults_follow_architecture() -> None:
    (c,) = parse_documents(cluster_doc(), "t")
    assert isinstance(c, Cluster)
    link = c.link
    assert link is not None
    assert (link.enable, link.cni, link.network_type, link.ip_family) == (
        True,
        "calico",
        "p2p",
        "all",
    )
    assert (link.bridge_cidrs.ip, link.bridge_cidrs.ip6) == ("220.0.0.0/8", "9480::/16")
    assert (link.local_cidrs.ip, link.local_cidrs.ip6) == ("210.0.0.0/8", "9470::/16")
    assert link.default_nic_name == "*"
    assert c.spec.namespace == "kosmos-system"


def test_kosmos_manifest_loads_unchanged_and_round_trips() -> None:
    objs = load_manifest(FIXTURES / "kosmos-member-cluster.yaml")
    assert [o.KIND for o in objs] == ["Cluster", "ClusterNode", "NodeConfig"]
    cluster, node, config = objs
    assert isinstance(cluster, Cluster) and isinstance(node, ClusterNode)
    assert isinstance(config, NodeConfig)
    assert cluster.link is not None
    assert cluster.link.nic_node_names[0].node_name == ["node-2", "node-3"]
    assert cluster.link.local_cidrs.ip6 == "9470::/16"  # 9470::0/16 normalised
    assert cluster.spec.cluster_tree_options == {"enable": False, "leafModels": []}
    assert node.spec.is_gateway and node.metadata.resource_version == "5531"
    assert node.metadata.model_extra and "managedFields" in node.metadata.model_extra
    assert config.spec.devices[0].bind_dev == "eth0"
    # JSON names survive a round trip exactly.
    again = Cluster.model_validate(cluster.to_dict())
    assert again == cluster
    dumped = cluster.to_dict()["spec"]["clusterLinkOptions"]
    assert {"localCIDRs", "bridgeCIDRs", "nicNodeNames", "defaultNICName", "globalCIDRsMap"} <= set(
        dumped
    )


@pytest.mark.parametrize(
    "given, expected",
    [
        ("10.237.6.0/18", "10.237.0.0/18"),
        ("2409:8c2f:3800:0011::0a18:0000/114", "2409:8c2f:3800:11::a18:0/114"),
        ("192.168.1.0/24", "192.168.1.0/24"),
    ],
)
def test_cidrs_normalised_to_network_form(given: str, expected: str) -> None:
    doc = (
        "apiVersion: kosmos.io/v1alpha1\nkind: ClusterNode\nmetadata: {name: c1-n1}\n"
        f'spec: {{clusterName: c1, nodeName: n1, podCIDRs: ["{given}"]}}\n'
    )
    (node,) = parse_documents(doc, "t")
    assert isinstance(node, ClusterNode)
    assert node.spec.pod_cidrs == [expected]


@pytest.mark.parametrize(
    "doc, needle",
    [
        (
            cluster_doc("{networkType: mesh}"),
            "spec.clusterLinkOptions.networkType: Input should be 'p2p' or 'gateway'",
        ),
        (cluster_doc("{ipFamily: ipv5}"), "spec.clusterLinkOptions.ipFamily"),
        (cluster_doc("{bridgeCIDRs: {ip: 300.0.0.0/8}}"), "spec.clusterLinkOptions.bridgeCIDRs.ip"),
        (cluster_doc('{bridgeCIDRs: {ip: "9480::/16"}}'), "is an IPv6 CIDR"),
        (
            cluster_doc("{globalCIDRsMap: {10.0.0.0/16: 10.1.0.0/24}}"),
            "must have the size of its real CIDR",
        ),
        (cluster_doc('{globalCIDRsMap: {10.0.0.0/16: "fd00::/16"}}'), "different families"),
        (cluster_doc("{autodetectionMethod: first-found}"), "can-reach"),
        (cluster_doc("{}", name="Bad_Name"), "metadata.name"),
        (
            cluster_doc("{bogus: 1}"),
            "spec.clusterLinkOptions.bogus: Extra inputs are not permitted",
        ),
        (
            "apiVersion: kosmos.io/v1alpha1\nkind: Widget\nmetadata: {name: w}\n",
            "unknown kind 'Widget'",
        ),
        (
            "apiVersion: v9\nkind: Cluster\nmetadata: {name: c}\n",
            "apiVersion must be 'kosmos.io/v1alpha1'",
        ),
        ("kind: Cluster\nmetadata: {name: c}\nspec: [\n", "malformed YAML at line"),
        ("- a\n- b\n", "expected a mapping"),
        (cluster_doc() + "---\n" + cluster_doc(), "duplicate of document 1"),
    ],
    ids=[
        "enum-network-type",
        "enum-ip-family",
        "bad-cidr",
        "v6-in-v4-pool",
        "global-size",
        "global-family",
        "autodetect",
        "dns-name",
        "unknown-field",
        "unknown-kind",
        "api-version",
        "malformed-yaml",
        "not-a-mapping",
        "duplicate",
    ],
)
def test_bad_input_names_file_object_and_field(doc: str, needle: str) -> None:
    with pytest.raises(ManifestError) as info:
        parse_documents(doc, "input.yaml")
    message = str(info.value)
    assert message.startswith("input.yaml")
    assert needle in message
    assert "\n" not in message


def test_error_names_the_object() -> None:
    with pytest.raises(ManifestError, match=r"document 2 \(Cluster/c2\)"):
        parse_documents(cluster_doc() + "---\n" + cluster_doc("{ipFamily: x}", name="c2"), "f")


def test_list_kind_is_expanded() -> None:
    doc = "apiVersion: v1\nkind: List\nitems:\n  - {apiVersion: kosmos.io/v1alpha1, kind: Cluster, metadata: {name: a}}\n"
    (c,) = parse_documents(doc, "t")
    assert c.name == "a"


def test_clusternode_ip_families_checked() -> None:
    doc = "apiVersion: kosmos.io/v1alpha1\nkind: ClusterNode\nmetadata: {name: c-n}\nspec: {ip: 'fd00::1'}\n"
    with pytest.raises(ManifestError, match=r"spec.ip: .*IPv6 address"):
        parse_documents(doc, "t")
