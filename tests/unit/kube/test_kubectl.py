"""The seed's own checks through a real `kubectl` (issue 12 §6): after install and joins on the
kube store, `kubectl get` of our three kinds against the API server double prints Kosmos'
columns in Kosmos' order, and `kubectl apply --server-side -f` of the install manifests works.

The double (tests/kubeapi.py) serves discovery, OpenAPI v3 and the Table format from our CRDs;
kubectl reaches it over plain HTTP with the double's own kubeconfig. `.ci/run` installs Debian's
kubernetes-client where no kubectl is on PATH.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from clusterlink.api import ClusterNode, NodeConfig, ObjectMeta
from clusterlink.api.clusternode import ClusterNodeSpec
from clusterlink.federation import kube as kube_federation
from clusterlink.kube import deploy as kdeploy
from clusterlink.kube import manifests as m
from clusterlink.kubeclient.api import KubeApi
from clusterlink.kubeclient.target import Target
from clusterlink.store.kube import KubeStore
from tests.kubeapi import AGE_COLUMN, RunningApiServer, cell, human_duration

KUBECTL = shutil.which(os.environ.get("KUBECTL", "kubectl"))  # KUBECTL=path: another one
needs_kubectl = pytest.mark.skipif(
    KUBECTL is None,
    reason="no kubectl binary on PATH (.ci/run installs Debian's kubernetes-client)",
)
# Kosmos' columns (its CRDs' additionalPrinterColumns; NodeConfig has none, so NAME AGE), then
# ours: every kind gets AGE, NodeConfig its PHASE.
KOSMOS = {
    "clusters": ["NAME", "NETWORK_TYPE", "IP_FAMILY"],
    "clusternodes": ["NAME", "ROLES", "INTERFACE", "IP"],
    "nodeconfigs": ["NAME", "AGE"],
}
OURS = {
    "clusters": ["NAME", "NETWORK_TYPE", "IP_FAMILY", "AGE"],
    "clusternodes": ["NAME", "ROLES", "INTERFACE", "IP", "AGE"],
    "nodeconfigs": ["NAME", "AGE", "PHASE"],
}
AGE = re.compile(r"^\d+[smhdy](\d+[smhd])?$")


def kubectl(server: RunningApiServer, home: Path, *args: str) -> str:
    """Run the real kubectl against the double; its discovery cache and HOME stay in `home`."""
    assert KUBECTL is not None
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"} | {"HOME": str(home)}
    home.mkdir(exist_ok=True)
    result = subprocess.run(
        [KUBECTL, "--kubeconfig", str(server.kubeconfig), "--cache-dir", str(home / "cache"),
         "--request-timeout", "20s", *args],
        capture_output=True, text=True, timeout=60, env=env, check=False,
    )  # fmt: skip
    assert result.returncode == 0, f"kubectl {' '.join(args)}:\n{result.stderr}"
    return result.stdout


def columns(text: str) -> tuple[list[str], list[dict[str, str]]]:
    """kubectl's table: the header's words, and each row cut at the header words' offsets
    (a blank cell stays blank)."""
    lines = text.rstrip("\n").splitlines()
    header = lines[0].split()
    starts = [match.start() for match in re.finditer(r"\S+", lines[0])]
    rows = []
    for line in lines[1:]:
        ends: list[int | None] = [*starts[1:], None]
        cells = [line[a:b].strip() for a, b in zip(starts, ends, strict=True)]
        rows.append(dict(zip(header, cells, strict=True)))
    return header, rows


@dataclass
class Federation:
    control: RunningApiServer
    member: RunningApiServer
    home: Path


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    """install (the control cluster joins as `kosmos-control-cluster`, p2p) and a join (`m1`,
    gateway, both families) on the kube store, through the domain functions; then the nodes
    and node configs its components would write. Read only by the tests that share it."""
    tmp_path = tmp_path_factory.mktemp("federation")
    (tmp_path / "control").mkdir()
    (tmp_path / "member").mkdir()
    with (
        RunningApiServer(tmp_path / "control") as control,
        RunningApiServer(tmp_path / "member") as member,
    ):
        ck = str(control.kubeconfig)
        control_api = KubeApi(Target(ck), field_manager=kdeploy.FIELD_MANAGER)
        member_api = KubeApi(Target(str(member.kubeconfig)), field_manager=kdeploy.FIELD_MANAGER)
        store = KubeStore(KubeApi(Target(ck)))
        try:
            kube_federation.install(control_api, store, control.kubeconfig.read_text(),
                            "kosmos-control-cluster", kdeploy.KubeLinkOptions(network_type="p2p"),
                            lambda _: None)  # fmt: skip
            kube_federation.join(member_api, control_api, store, "m1",
                         member.kubeconfig.read_text(), kdeploy.control_cluster_of(ck),
                         kdeploy.KubeLinkOptions(network_type="gateway", ip_family="all"),
                         lambda _: None)  # fmt: skip
            for node, ip, roles in (
                ("n1", "192.168.0.11", ["gateway"]),
                ("n2", "192.168.0.12", []),
            ):
                store.create(
                    ClusterNode(
                        metadata=ObjectMeta(name=f"m1-{node}", labels={"kosmos.io/cluster": "m1"}),
                        spec=ClusterNodeSpec(cluster_name="m1", node_name=node, ip=ip,
                                             interface_name="eth0", roles=roles,
                                             pod_cidrs=[f"10.{ip[-1]}.0.0/24"]),
                    )
                )  # fmt: skip
                store.create(NodeConfig(metadata=ObjectMeta(name=f"m1-{node}")))
            synced = store.get(NodeConfig, "m1-n1")
            synced.status.phase = "Synced"  # as its agent reports
            store.update_status(synced)
            yield Federation(control, member, tmp_path / "kubectl")
        finally:
            store.close()
            for client in (control_api, member_api):
                client.close()


@needs_kubectl
def test_get_clusters_prints_kosmos_columns(federation: Federation) -> None:
    out = kubectl(federation.control, federation.home, "get", "clusters.kosmos.io")
    header, rows = columns(out)
    assert header[: len(KOSMOS["clusters"])] == KOSMOS["clusters"]
    assert header == OURS["clusters"]
    assert [{k: v for k, v in r.items() if k != "AGE"} for r in rows] == [
        {"NAME": "kosmos-control-cluster", "NETWORK_TYPE": "p2p", "IP_FAMILY": "ipv4"},
        {"NAME": "m1", "NETWORK_TYPE": "gateway", "IP_FAMILY": "all"},
    ]
    assert all(AGE.match(r["AGE"]) for r in rows), out


@needs_kubectl
def test_get_clusternodes_prints_kosmos_columns(federation: Federation) -> None:
    out = kubectl(federation.control, federation.home, "get", "clusternodes.kosmos.io")
    header, rows = columns(out)
    assert header[: len(KOSMOS["clusternodes"])] == KOSMOS["clusternodes"]
    assert header == OURS["clusternodes"]
    # ROLES is an array: the API server prints it as JSON, as Kosmos' clusters show it.
    assert [{k: v for k, v in r.items() if k != "AGE"} for r in rows] == [
        {"NAME": "m1-n1", "ROLES": '["gateway"]', "INTERFACE": "eth0", "IP": "192.168.0.11"},
        {"NAME": "m1-n2", "ROLES": "[]", "INTERFACE": "eth0", "IP": "192.168.0.12"},
    ]
    assert all(AGE.match(r["AGE"]) for r in rows), out
    one = kubectl(federation.control, federation.home, "get", "clusternodes.kosmos.io", "m1-n1")
    one_header, one_rows = columns(one)
    assert one_header == OURS["clusternodes"]
    assert [(r["NAME"], r["ROLES"]) for r in one_rows] == [("m1-n1", '["gateway"]')]


@needs_kubectl
def test_get_nodeconfigs_prints_kosmos_columns(federation: Federation) -> None:
    out = kubectl(federation.control, federation.home, "get", "nodeconfigs.kosmos.io")
    header, rows = columns(out)
    assert header[: len(KOSMOS["nodeconfigs"])] == KOSMOS["nodeconfigs"]
    assert header == OURS["nodeconfigs"]
    assert [(r["NAME"], r["PHASE"]) for r in rows] == [("m1-n1", "Synced"), ("m1-n2", "")]
    assert all(AGE.match(r["AGE"]) for r in rows), out


@needs_kubectl
def test_kubectl_finds_our_kinds_by_discovery(federation: Federation) -> None:
    """Short forms resolve through discovery (singular, plural) and the objects are ours."""
    names = kubectl(federation.control, federation.home, "get", "cluster", "-o", "name")
    assert names.split() == ["cluster.kosmos.io/kosmos-control-cluster", "cluster.kosmos.io/m1"]
    got = json.loads(
        kubectl(federation.control, federation.home, "get", "clusternode", "m1-n1", "-o", "json")
    )
    assert got["spec"]["roles"] == ["gateway"] and got["kind"] == "ClusterNode"
    resources = kubectl(federation.control, federation.home, "api-resources",
                        "--api-group", "kosmos.io", "-o", "name")  # fmt: skip
    assert resources.split() == [
        "clusternodes.kosmos.io",
        "clusters.kosmos.io",
        "nodeconfigs.kosmos.io",
    ]
    # The member's objects are in the member cluster, where a namespace list works too.
    agents = kubectl(federation.member, federation.home, "get", "daemonsets", "-n", "kosmos-system")
    assert columns(agents)[1][0]["NAME"] == "clusterlink-agent"
    assert "kosmos-system" in kubectl(federation.member, federation.home, "get", "namespaces")


def install_manifests(image: str) -> list[m.Obj]:
    """What `kosmosctl install` writes to the control cluster, in its order: the control plane,
    the control cluster's own member components, its Cluster."""
    options = kdeploy.KubeLinkOptions(image=image, network_type="p2p")
    cluster = kdeploy.cluster_object("kosmos-control-cluster", "apiVersion: v1\n", options)
    components = (
        m.control_plane(image)
        + m.member_identity("kosmos-control-cluster")
        + kdeploy.member_objects("kosmos-control-cluster", options, "apiVersion: v1\n")
    )
    return [*m.unique(components), cluster.to_dict()]


def plural_of(obj: m.Obj) -> str:
    return "clusters" if obj["kind"] == "Cluster" else m.PATHS[obj["kind"]][1]


@needs_kubectl
def test_apply_server_side_of_the_install_manifests(tmp_path: Path) -> None:
    objects = install_manifests("reg/cl:1")
    manifest = tmp_path / "install.yaml"
    manifest.write_text(yaml.safe_dump_all(objects, sort_keys=False))
    with RunningApiServer(tmp_path) as server:
        home = tmp_path / "kubectl"
        out = kubectl(server, home, "apply", "--server-side", "-f", str(manifest))
        lines = out.splitlines()
        assert len(lines) == len(objects) and all(
            line.endswith(" serverside-applied") for line in lines
        ), out
        held = {
            (plural_of(o), o["metadata"].get("namespace"), o["metadata"]["name"]): o
            for o in objects
        }
        for (plural, ns, name), want in held.items():
            got = [o for o in server.objects(plural) if o["metadata"]["name"] == name]
            assert len(got) == 1, (plural, name)
            assert got[0]["metadata"].get("namespace") == ns
            assert got[0].get("spec") == want.get("spec") or "spec" not in want, (plural, name)
        deployment = next(server.objects("deployments"))
        assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "reg/cl:1"
        # Applied again: nothing to change, still success.
        before = {o["metadata"]["resourceVersion"] for p, _, _ in held for o in server.objects(p)}
        kubectl(server, home, "apply", "--server-side", "-f", str(manifest))
        after = {o["metadata"]["resourceVersion"] for p, _, _ in held for o in server.objects(p)}
        assert after == before
        # The Cluster it applied lists with the columns of the CRD it applied.
        header, rows = columns(kubectl(server, home, "get", "clusters.kosmos.io"))
        assert header == OURS["clusters"] and rows[0]["NETWORK_TYPE"] == "p2p"


@needs_kubectl
def test_columns_come_from_the_crd_the_server_holds(tmp_path: Path) -> None:
    """As an API server does: an applied CRD's printer columns are what `kubectl get` shows."""
    crd = next(o for o in m.control_plane() if o["metadata"]["name"] == "clusters.kosmos.io")
    crd["spec"]["versions"][0]["additionalPrinterColumns"] = [
        {"name": "CNI", "type": "string", "jsonPath": ".spec.clusterLinkOptions.cni"},
        {"name": "NICS", "type": "string", "jsonPath": ".spec.clusterLinkOptions.nicNodeNames"},
        {"name": "MISSING", "type": "string", "jsonPath": ".spec.nothing.here"},
    ]
    cluster = kdeploy.cluster_object("c1", "apiVersion: v1\n", kdeploy.KubeLinkOptions())
    manifest = tmp_path / "crd.yaml"
    manifest.write_text(yaml.safe_dump_all([crd, cluster.to_dict()]))
    with RunningApiServer(tmp_path) as server:
        home = tmp_path / "kubectl"
        kubectl(server, home, "apply", "--server-side", "-f", str(manifest))
        header, rows = columns(kubectl(server, home, "get", "clusters.kosmos.io"))
        assert header == ["NAME", "CNI", "NICS", "MISSING"]
        assert rows == [{"NAME": "c1", "CNI": "calico", "NICS": "[]", "MISSING": ""}]  # a null cell


def test_discovery_without_aggregation_lists_our_crds_names(tmp_path: Path) -> None:
    """A client that asks for plain JSON gets the legacy lists, names from our CRDs."""
    with RunningApiServer(tmp_path) as server:

        def get(path: str) -> dict[str, object]:
            with urllib.request.urlopen(server.url + path, timeout=10) as resp:
                data: dict[str, object] = json.load(resp)
                return data

        groups = get("/apis")
        assert groups["kind"] == "APIGroupList"
        kosmos = get("/apis/kosmos.io")
        assert kosmos["preferredVersion"] == {"groupVersion": "kosmos.io/v1alpha1",
                                              "version": "v1alpha1"}  # fmt: skip
        listed = get("/apis/kosmos.io/v1alpha1")
        resources = {r["name"]: r for r in listed["resources"]}  # type: ignore[attr-defined]
        assert resources["clusters"] == {
            "name": "clusters",
            "singularName": "cluster",
            "namespaced": False,
            "kind": "Cluster",
            "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
        }
        assert resources["clusters/status"]["verbs"] == ["get", "patch", "update"]
        assert get("/api")["versions"] == ["v1"]
        core = {r["name"]: r for r in get("/api/v1")["resources"]}  # type: ignore[attr-defined]
        assert core["namespaces"]["shortNames"] == ["ns"] and core["pods"]["namespaced"] is True
        assert get("/version")["gitVersion"] == "v1.32.0"
        with pytest.raises(urllib.error.HTTPError) as missing:
            get("/apis/nope.io/v1")
        assert missing.value.code == 404


def test_cells_render_as_the_api_server_does() -> None:
    long_ago = (dt.datetime.now(dt.UTC) - dt.timedelta(days=3, hours=5)).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    obj = {"metadata": {"creationTimestamp": long_ago}, "spec": {"roles": ["a", "b"], "n": 3}}
    assert cell(AGE_COLUMN, obj) == "3d5h"
    assert cell({"type": "string", "jsonPath": ".spec.roles"}, obj) == '["a","b"]'
    assert cell({"type": "string", "jsonPath": ".spec.roles[1]"}, obj) == "b"
    assert cell({"type": "string", "jsonPath": ".spec.n"}, obj) == "3"
    assert cell({"type": "integer", "jsonPath": ".spec.n"}, obj) == 3
    assert cell({"type": "string", "jsonPath": ".spec.absent"}, obj) is None
    assert cell({"type": "date", "jsonPath": ".spec.roles[0]"}, obj) == "<invalid>"
    durations = {0: "0s", 119: "119s", 120: "2m", 150: "2m30s", 600: "10m", 3 * 3600: "3h",
                 3 * 3600 + 60: "3h1m", 9 * 3600: "9h", 48 * 3600: "2d", 10 * 86400: "10d",
                 800 * 86400: "2y70d", 3000 * 86400: "8y"}  # fmt: skip
    assert {s: human_duration(s) for s in durations} == durations
