"""Discovery adapters on real object shapes (as the Kubernetes API returns them)."""

from __future__ import annotations

import json

import pytest

from clusterlink.controllers.discovery import (
    DiscoveryError,
    member_nodes,
    node_cidrs_from_block_affinities,
    node_cidrs_from_node,
    pod_cidrs_from_calico_pools,
    pod_cidrs_from_cilium,
    pod_cidrs_from_flannel,
    remote_calico_pools,
    service_cidrs_from_apiserver,
)

APISERVER = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {
        "name": "kube-apiserver-cluster1-control-plane",
        "namespace": "kube-system",
        "labels": {"component": "kube-apiserver"},
    },
    "spec": {
        "containers": [
            {
                "name": "kube-apiserver",
                "image": "registry.k8s.io/kube-apiserver:v1.29.0",
                "command": [
                    "kube-apiserver",
                    "--advertise-address=172.18.0.2",
                    "--service-cluster-ip-range=10.233.6.0/18,2409:8c2f:3800:0011::0a18:0000/114",
                    "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                ],
            }
        ]
    },
}

IPPOOLS = [
    {"apiVersion": "crd.projectcalico.org/v1", "kind": "IPPool", "metadata": {"name": "default-ipv4-ippool"},
     "spec": {"cidr": "10.233.64.0/18", "blockSize": 26, "ipipMode": "Always", "natOutgoing": True, "nodeSelector": "all()"}},
    {"apiVersion": "crd.projectcalico.org/v1", "kind": "IPPool", "metadata": {"name": "default-ipv6-ippool"},
     "spec": {"cidr": "fd11:233::/48", "blockSize": 122, "natOutgoing": False, "nodeSelector": "all()"}},
    {"apiVersion": "crd.projectcalico.org/v1", "kind": "IPPool", "metadata": {"name": "clusterlink-c2-10-234-64-0-18"},
     "spec": {"cidr": "10.234.64.0/18", "disabled": True, "natOutgoing": False}},
]  # fmt: skip

AFFINITIES = [
    {"apiVersion": "crd.projectcalico.org/v1", "kind": "BlockAffinity", "metadata": {"name": "node1-10-233-70-0-26"},
     "spec": {"cidr": "10.233.70.0/26", "deleted": "false", "node": "node1", "state": "confirmed"}},
    {"apiVersion": "crd.projectcalico.org/v1", "kind": "BlockAffinity", "metadata": {"name": "node1-10-233-71-0-26"},
     "spec": {"cidr": "10.233.71.0/26", "deleted": "false", "node": "node1", "state": "pending"}},
    {"apiVersion": "crd.projectcalico.org/v1", "kind": "BlockAffinity", "metadata": {"name": "node2-10-233-80-0-26"},
     "spec": {"cidr": "10.233.80.0/26", "deleted": "false", "node": "node2", "state": "confirmed"}},
]  # fmt: skip

FLANNEL = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {"name": "kube-flannel-cfg", "namespace": "kube-flannel"},
    "data": {
        "cni-conf.json": "{}",
        "net-conf.json": json.dumps(
            {
                "Network": "10.244.0.0/16",
                "IPv6Network": "fd00:10:244::/56",
                "Backend": {"Type": "vxlan"},
            }
        ),
    },
}

CILIUM = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {"name": "cilium-config", "namespace": "kube-system"},
    "data": {
        "cluster-pool-ipv4-cidr": "10.0.0.0/8",
        "cluster-pool-ipv4-mask-size": "24",
        "ipam": "cluster-pool",
    },
}


def test_service_cidrs_from_the_apiserver_pod() -> None:
    assert service_cidrs_from_apiserver([APISERVER]) == [
        "10.233.0.0/18",
        "2409:8c2f:3800:11::a18:0/114",
    ]
    split = json.loads(json.dumps(APISERVER))
    split["spec"]["containers"][0]["command"] = ["kube-apiserver"]
    split["spec"]["containers"][0]["args"] = ["--service-cluster-ip-range", "10.96.0.0/12"]
    assert service_cidrs_from_apiserver([split]) == ["10.96.0.0/12"]
    assert service_cidrs_from_apiserver([]) == []  # managed clusters: use an override


def test_calico_pools_and_blocks() -> None:
    assert pod_cidrs_from_calico_pools(IPPOOLS) == [
        "10.233.64.0/18",
        "fd11:233::/48",
    ]  # ours left out
    assert node_cidrs_from_block_affinities(AFFINITIES, "node1") == ["10.233.70.0/26"]
    assert node_cidrs_from_block_affinities(AFFINITIES, "node3") == []


def test_flannel_cilium_and_node_spec() -> None:
    assert pod_cidrs_from_flannel(FLANNEL) == ["10.244.0.0/16", "fd00:10:244::/56"]
    assert pod_cidrs_from_cilium(CILIUM) == ["10.0.0.0/8"]
    node = {
        "kind": "Node",
        "metadata": {"name": "n1"},
        "spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24", "fd00:10:244:1::/64"]},
    }
    assert node_cidrs_from_node(node) == ["10.244.1.0/24", "fd00:10:244:1::/64"]
    assert node_cidrs_from_node(
        {"kind": "Node", "metadata": {"name": "n2"}, "spec": {"podCIDR": "10.244.2.0/24"}}
    ) == ["10.244.2.0/24"]


def test_excluded_nodes_are_skipped() -> None:
    nodes = [
        {"kind": "Node", "metadata": {"name": "a", "labels": {}}},
        {"kind": "Node", "metadata": {"name": "b", "labels": {"kosmos.io/exclude": "true"}}},
    ]
    assert [n["metadata"]["name"] for n in member_nodes(nodes)] == ["a"]


@pytest.mark.parametrize(
    "call, needle",
    [
        (
            lambda: pod_cidrs_from_flannel(
                {"kind": "ConfigMap", "metadata": {"name": "kube-flannel-cfg"}, "data": {}}
            ),
            "net-conf.json missing",
        ),
        (
            lambda: pod_cidrs_from_flannel(
                {"kind": "ConfigMap", "metadata": {"name": "f"}, "data": {"net-conf.json": "{"}}
            ),
            "not JSON",
        ),
        (
            lambda: pod_cidrs_from_cilium(
                {"kind": "ConfigMap", "metadata": {"name": "cilium-config"}, "data": {}}
            ),
            "no cluster-pool",
        ),
        (
            lambda: pod_cidrs_from_calico_pools(
                [{"kind": "IPPool", "metadata": {"name": "p"}, "spec": {}}]
            ),
            "IPPool/p: spec.cidr missing",
        ),
        (
            lambda: node_cidrs_from_node(
                {"kind": "Node", "metadata": {"name": "n"}, "spec": {"podCIDRs": ["x/99"]}}
            ),
            "Node/n: spec.podCIDRs",
        ),
    ],
)
def test_malformed_objects_are_named(call, needle: str) -> None:
    with pytest.raises(DiscoveryError, match=needle):
        call()


def test_remote_calico_pools() -> None:
    """Kosmos' calicoippool cases: create for remotes, skip the local one and overlaps,
    delete stale ones."""
    existing = [
        *IPPOOLS,
        {
            "kind": "IPPool",
            "metadata": {"name": "clusterlink-c9-10-99-0-0-16"},
            "spec": {"cidr": "10.99.0.0/16", "disabled": True},
        },
    ]
    apply, delete = remote_calico_pools(
        {"c2": ["10.234.64.0/18"], "c3": ["10.232.64.0/18", "10.233.0.0/16"]},
        local_cidrs=["10.233.64.0/18", "10.233.0.0/18"],
        existing=existing,
    )
    names = [p["metadata"]["name"] for p in apply]
    assert names == [
        "clusterlink-c2-10-234-64-0-18",
        "clusterlink-c3-10-232-64-0-18",
    ]  # 10.233/16 overlaps: skipped
    assert apply[0]["spec"] == {
        "cidr": "10.234.64.0/18",
        "disabled": True,
        "natOutgoing": False,
        "ipipMode": "Never",
        "vxlanMode": "Never",
    }
    assert delete == ["clusterlink-c9-10-99-0-0-16"]
    # Applying what we want again changes nothing.
    again, none = remote_calico_pools(
        {"c2": ["10.234.64.0/18"]}, ["10.233.64.0/18"], [*IPPOOLS[:2], apply[0]]
    )
    assert again == [] and none == []
