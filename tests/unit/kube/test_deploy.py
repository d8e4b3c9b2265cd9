"""install / join / unjoin / uninstall against API server doubles: exactly the expected
objects, idempotent, and all gone afterwards. A real network-manager runs on the `kube` store."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from clusterlink.api import Cluster, ClusterNode, NodeConfig, ObjectMeta
from clusterlink.api.clusternode import ClusterNodeSpec
from clusterlink.cli.kosmosctl import app
from clusterlink.controllers.leader import LeaseTiming
from clusterlink.controllers.network_manager import NetworkManager
from clusterlink.kube import deploy as kdeploy
from clusterlink.kube import manifests as m
from clusterlink.kubeclient.api import KubeApi
from clusterlink.kubeclient.target import Target
from clusterlink.lab.state import HANDLE_KIND
from clusterlink.store.kube import KubeStore
from tests.kubeapi import SYSTEM_NAMESPACES, RunningApiServer

PLURALS = {kind: plural for kind, (_, plural, _) in m.PATHS.items()}
OURS = set(PLURALS.values()) | {"clusters", "clusternodes", "nodeconfigs", "leases"}


def inventory(server: RunningApiServer) -> set[tuple[str, str | None, str]]:
    """(plural, namespace, name) of every object the double holds of the kinds we write (not
    the namespaces every API server has)."""
    out = set()
    for plural in OURS:
        for obj in server.objects(plural):
            if plural == "namespaces" and obj["metadata"]["name"] in SYSTEM_NAMESPACES:
                continue
            out.add((plural, obj["metadata"].get("namespace"), obj["metadata"]["name"]))
    return out


def expected(objects: list[m.Obj]) -> set[tuple[str, str | None, str]]:
    return {
        (PLURALS[o["kind"]], o["metadata"].get("namespace"), o["metadata"]["name"]) for o in objects
    }


def kosmosctl(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def control(tmp_path: Path) -> Iterator[RunningApiServer]:
    (tmp_path / "control").mkdir()
    with RunningApiServer(tmp_path / "control") as server:
        yield server


@pytest.fixture
def member(tmp_path: Path) -> Iterator[RunningApiServer]:
    (tmp_path / "member").mkdir()
    with RunningApiServer(tmp_path / "member") as server:
        yield server


def test_install_join_unjoin_uninstall(control: RunningApiServer, member: RunningApiServer) -> None:
    ck, mk = str(control.kubeconfig), str(member.kubeconfig)
    out = kosmosctl("install", "--kubeconfig", ck, "--image", "reg/cl:1", "--wait-time", "0")
    assert "clusterlink installed; kosmos-control-cluster joined" in out
    control_objects = (
        m.control_plane("reg/cl:1")
        + m.member_identity("kosmos-control-cluster")
        + kdeploy.member_objects(
            "kosmos-control-cluster", kdeploy.KubeLinkOptions(image="reg/cl:1"), "-"
        )
    )
    want = expected(control_objects) | {
        ("clusters", None, "kosmos-control-cluster"),
        ("secrets", "kosmos-system", "clusterlink-kubeconfig-kosmos-control-cluster"),
    }
    assert inventory(control) == want

    # Idempotent: a second install changes no object.
    before = {
        (o["metadata"]["name"], o["metadata"]["resourceVersion"])
        for p in OURS
        for o in control.objects(p)
    }
    out = kosmosctl("install", "--kubeconfig", ck, "--image", "reg/cl:1", "--wait-time", "0")
    assert "control plane applied (0 object(s) changed)" in out
    # ... but the member's token: a join renews it.
    assert "kosmos-control-cluster: member components applied (1 object(s) changed)" in out
    after = {
        (o["metadata"]["name"], o["metadata"]["resourceVersion"])
        for p in OURS
        for o in control.objects(p)
    }
    assert {n for n, _ in after - before} == {m.CONTROL_SECRET}

    kosmosctl("join", "cluster", "--name", "m1", "--kubeconfig", mk, "--host-kubeconfig", ck,
              "--network-type", "p2p", "--wait-time", "0")  # fmt: skip
    member_objects = kdeploy.member_objects("m1", kdeploy.KubeLinkOptions(network_type="p2p"), "-")
    assert inventory(member) == expected(member_objects)
    identity = expected(m.member_identity("m1")) | {
        ("secrets", "kosmos-system", "clusterlink-kubeconfig-m1")
    }
    assert identity <= inventory(control)
    out = kosmosctl("join", "cluster", "--name", "m1", "--kubeconfig", mk, "--host-kubeconfig", ck,
                    "--network-type", "p2p", "--wait-time", "0")  # fmt: skip
    assert "m1: member components applied (1 object(s) changed)" in out  # the token, renewed
    store = KubeStore(KubeApi(Target(ck)))
    m1 = store.get(Cluster, "m1")
    assert m1.spec.cluster_link_options and m1.spec.cluster_link_options.network_type == "p2p"
    assert m1.spec.kubeconfig is None  # the credentials are in the Secret, not on the Cluster
    assert kdeploy.member_kubeconfig_of(store, m1) == member.kubeconfig.read_text()
    secret = next(member.objects("secrets"))
    assert secret["metadata"]["name"] == m.CONTROL_SECRET
    mounted = yaml.safe_load(base64.b64decode(secret["data"]["kubeconfig"]))
    assert mounted["users"][0]["name"] == "clusterlink-member-m1"
    assert mounted["users"][0]["user"]["token"] != "test-token"  # not the caller's identity

    # Joining the same Kubernetes cluster under another name is refused - also through a
    # kubeconfig that reaches it at another address: it is known by its kube-system UID.
    kube_system = next(
        n for n in member.objects("namespaces") if n["metadata"]["name"] == "kube-system"
    )
    assert m1.spec.cluster_id == kube_system["metadata"]["uid"]
    other_address = member.kubeconfig.parent / "by-localhost.yaml"
    other_address.write_text(member.kubeconfig.read_text().replace("127.0.0.1", "localhost"))
    for kubeconfig in (mk, str(other_address)):
        result = CliRunner().invoke(
            app, ["join", "cluster", "--name", "m2", "--kubeconfig", kubeconfig,
                  "--host-kubeconfig", ck, "--wait-time", "0"],
        )  # fmt: skip
        assert result.exit_code == 2, result.output
        assert "joined already, as Cluster m1" in result.output
    assert sorted(c.name for c in store.list(Cluster)) == ["kosmos-control-cluster", "m1"]

    kosmosctl("unjoin", "cluster", "--name", "m1", "--kubeconfig", ck)
    assert inventory(member) == {("namespaces", None, "kosmos-system")}
    assert [c.name for c in store.list(Cluster)] == ["kosmos-control-cluster"]
    assert not identity & inventory(control)  # its account, bindings and credentials: gone

    kosmosctl("uninstall", "--kubeconfig", ck)
    assert inventory(control) == set()


def test_unjoin_waits_for_the_network_manager_to_remove_nodeconfigs(
    control: RunningApiServer,
) -> None:
    """A network-manager on the kube store plans NodeConfigs and removes them at unjoin."""
    ck = str(control.kubeconfig)
    kosmosctl("install", "--kubeconfig", ck, "--network-type", "p2p", "--wait-time", "0")
    store = KubeStore(KubeApi(Target(ck)))
    for i in (1, 2):
        store.create(
            ClusterNode(
                metadata=ObjectMeta(name=f"kosmos-control-cluster-n{i}",
                                    labels={"kosmos.io/cluster": "kosmos-control-cluster"}),
                spec=ClusterNodeSpec(cluster_name="kosmos-control-cluster", node_name=f"n{i}",
                                     ip=f"192.168.0.{i}", interface_name="eth0",
                                     pod_cidrs=[f"10.{i}.0.0/24"]),
            )
        )  # fmt: skip
    stop = threading.Event()
    manager = NetworkManager(KubeStore(KubeApi(Target(ck))), "nm-test")
    thread = threading.Thread(
        target=manager.run, args=(stop, LeaseTiming(2.0, 1.5, 0.25)), daemon=True
    )
    thread.start()
    try:
        for _ in range(100):
            if len(store.list(NodeConfig)) == 2:
                break
            stop.wait(0.1)
        assert sorted(nc.name for nc in store.list(NodeConfig)) == [
            "kosmos-control-cluster-n1",
            "kosmos-control-cluster-n2",
        ]
        kosmosctl("unjoin", "cluster", "--name", "kosmos-control-cluster", "--kubeconfig", ck)
        assert store.list(NodeConfig) == [] and store.list(ClusterNode) == []
    finally:
        stop.set()
        thread.join(10)


def test_unjoin_of_an_unknown_cluster_is_a_clear_error(control: RunningApiServer) -> None:
    result = CliRunner().invoke(
        app, ["unjoin", "cluster", "--name", "nope", "--kubeconfig", str(control.kubeconfig)]
    )
    assert result.exit_code == 1 and 'nope" not found' in result.output


def test_get_reads_the_kubernetes_api(control: RunningApiServer) -> None:
    ck = str(control.kubeconfig)
    kosmosctl("install", "--kubeconfig", ck, "--network-type", "p2p", "--wait-time", "0")
    out = kosmosctl("get", "clusters", "--kubeconfig", ck)
    assert out.split()[:6] == [
        "NAME",
        "NETWORK_TYPE",
        "IP_FAMILY",
        "kosmos-control-cluster",
        "p2p",
        "ipv4",
    ]


def test_dr_refuses_a_mix_of_lab_handles_and_kubeconfigs(
    control: RunningApiServer, tmp_path: Path
) -> None:
    handle = tmp_path / "handle.yaml"
    handle.write_text(f"kind: {HANDLE_KIND}\nlab: x\ncluster: c1\n")
    result = CliRunner().invoke(
        app, ["dr", "--src-kubeconfig", str(control.kubeconfig), "--dst-kubeconfig", str(handle)]
    )
    assert result.exit_code == 2 and "not a mix" in result.output


def test_contexts_of_one_kubeconfig(
    control: RunningApiServer, member: RunningApiServer, tmp_path: Path
) -> None:
    """One kubeconfig, two contexts: --context picks the cluster; the control cluster of a join
    is the file's current context; the member's stored kubeconfig has its context current."""
    both = yaml.safe_load(control.kubeconfig.read_text())
    other = yaml.safe_load(member.kubeconfig.read_text())
    for key in ("clusters", "users", "contexts"):
        for entry in other[key]:
            entry["name"] = "member"
        both[key] += other[key]
    both["contexts"][1]["context"] = {"cluster": "member", "user": "member"}
    config = tmp_path / "both.kubeconfig"
    config.write_text(yaml.safe_dump(both))
    k = str(config)
    kosmosctl("install", "--kubeconfig", k, "--context", "double", "--wait-time", "0")
    kosmosctl("join", "cluster", "--name", "m1", "--kubeconfig", k, "--context", "member",
              "--network-type", "p2p", "--wait-time", "0")  # fmt: skip
    assert ("deployments", "kosmos-system", "clusterlink-controller") in inventory(member)
    secret = next(s for s in member.objects("secrets") if s["metadata"]["name"] == m.CONTROL_SECRET)
    mounted = yaml.safe_load(base64.b64decode(secret["data"]["kubeconfig"]))
    # The control cluster only (the double's server), with the member account's token only.
    assert [c["cluster"]["server"] for c in mounted["clusters"]] == [control.url]
    assert [u["name"] for u in mounted["users"]] == ["clusterlink-member-m1"]
    out = kosmosctl("get", "clusters", "--kubeconfig", k, "--context", "double")
    assert "m1" in out and "kosmos-control-cluster" in out
    control_store = KubeStore(KubeApi(Target(str(control.kubeconfig))))
    text = kdeploy.member_kubeconfig_of(control_store, control_store.get(Cluster, "m1"))
    assert text is not None and yaml.safe_load(text)["current-context"] == "member"
    result = CliRunner().invoke(app, ["get", "clusters", "--kubeconfig", k, "--context", "nope"])
    assert result.exit_code == 2 and "Context 'nope' not found" in result.output
    kosmosctl("unjoin", "cluster", "--name", "m1", "--kubeconfig", k)
    assert inventory(member) == {("namespaces", None, "kosmos-system")}


def test_the_control_cluster_comes_from_kubeconfig_as_kubectl_finds_it(
    control: RunningApiServer, member: RunningApiServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kosmos' commands: `install --cni calico --default-nic eth0` and `join cluster --name c
    --kubeconfig MEMBER --cni calico --default-nic eth0 --enable-link`, the control cluster
    from $KUBECONFIG; `get` reads it from there too."""
    monkeypatch.delenv("CLUSTERLINK_STORE", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(control.kubeconfig))
    kosmosctl("install", "--cni", "calico", "--default-nic", "eth0", "--wait-time", "0")
    kosmosctl("join", "cluster", "--name", "c", "--kubeconfig", str(member.kubeconfig),
              "--cni", "calico", "--default-nic", "eth0", "--enable-link", "--wait-time", "0")  # fmt: skip
    assert ("deployments", "kosmos-system", "clusterlink-controller") in inventory(member)
    rows = kosmosctl("get", "clusters").split()
    assert "kosmos-control-cluster" in rows and "c" in rows
    kosmosctl("uninstall")
    assert inventory(member) == {("namespaces", None, "kosmos-system")}
