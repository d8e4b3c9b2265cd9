"""`trace` on Kubernetes: NS/POD and CLUSTER:NS/POD endpoints resolved by reading the Pod from
the member cluster running it (its kubeconfig from the control cluster's Secret), against API
server doubles (one control, one per member)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clusterlink.api import Cluster, ClusterNode, NodeConfig, NodeConfigStatus, ObjectMeta
from clusterlink.errors import BadInput
from clusterlink.kubeclient.api import KubeApi
from clusterlink.kubeclient.target import Target
from clusterlink.observe.trace import trace
from clusterlink.planner import plan
from clusterlink.store.kube import KubeStore
from tests.conftest import KOSMOSCTL
from tests.kubeapi import RunningApiServer
from tests.unit.planner.federation import cluster, node


def pod(api: KubeApi, ns: str, name: str, node_name: str, *ips: str) -> None:
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"nodeName": node_name, "containers": [{"name": "c", "image": "x"}]},
    }
    created = api.request("POST", f"/api/v1/namespaces/{ns}/pods", body=body)
    created["status"] = {"podIP": ips[0], "podIPs": [{"ip": ip} for ip in ips]}
    api.request("PUT", f"/api/v1/namespaces/{ns}/pods/{name}/status", body=created)


def mkdir(path: Path) -> Path:
    path.mkdir()
    return path


@pytest.fixture
def members(tmp_path: Path) -> Iterator[dict[str, KubeApi]]:
    """Member clusters a and b; a runs web/client, b runs web/server, both run web/twin."""
    with (
        RunningApiServer(mkdir(tmp_path / "a")) as a,
        RunningApiServer(mkdir(tmp_path / "b")) as b,
    ):
        apis = {"a": KubeApi(Target(str(a.kubeconfig))), "b": KubeApi(Target(str(b.kubeconfig)))}
        pod(apis["a"], "web", "client", "n1", "10.1.1.5")
        pod(apis["b"], "web", "server", "i", "10.2.2.7")
        pod(apis["a"], "web", "twin", "n1", "10.1.1.6")
        pod(apis["b"], "web", "twin", "i", "10.2.2.8")
        yield apis
        for api in apis.values():
            api.close()


@pytest.fixture
def control(kstore: KubeStore, members: dict[str, KubeApi]) -> KubeStore:
    """The control cluster: Clusters a (p2p) and b (gateway), planned and synced."""
    for c in (
        cluster("a", pods=("10.1.0.0/16",)),
        cluster("b", "gateway", pods=("10.2.0.0/16",)),
    ):
        created = kstore.create(c)
        kstore.update_status(created.model_copy(update={"status": c.status}))
        kubeconfig = members[c.name].target.kubeconfig
        assert kubeconfig is not None
        kstore.put_credentials(c.name, Path(kubeconfig).read_text())
    for n in (
        node("a", "n1", "192.168.1.1", pods=("10.1.1.0/24",)),
        node("b", "g", "192.168.2.1", gateway=True, pods=("10.2.1.0/24",)),
        node("b", "i", "192.168.2.2", pods=("10.2.2.0/24",)),
    ):
        kstore.create(n)
    configs = plan(list(kstore.list(Cluster)), list(kstore.list(ClusterNode))).node_configs()
    for name, spec in configs:
        nc = kstore.create(NodeConfig(metadata=ObjectMeta(name=name), spec=spec))
        status = NodeConfigStatus(phase="Synced", observed_generation=nc.metadata.generation)
        kstore.update_status(nc.model_copy(update={"status": status}))
    return kstore


def test_namespace_pod_endpoints_resolve_in_their_member_cluster(control: KubeStore) -> None:
    result = trace(control, "web/client", "web/server")
    assert (result.src.ip, result.src.node) == ("10.1.1.5", "a-n1")
    assert (result.dst.ip, result.dst.node) == ("10.2.2.7", "b-i")
    assert result.complete, result.hops
    assert [h.node for h in result.hops][-1] == "b-i"
    named = trace(control, "b:web/twin", "a:web/twin")
    assert (named.src.ip, named.dst.ip) == ("10.2.2.8", "10.1.1.6") and named.complete
    # A node of that name still wins: a/n1 is ClusterNode a-n1, not a Pod n1 in namespace a.
    assert trace(control, "a/n1", "web/server").src.ip == "192.168.1.1"


def test_pods_that_cannot_be_resolved_are_bad_input(control: KubeStore) -> None:
    with pytest.raises(BadInput, match=r"no such node, nor Pod in the member clusters \(a, b\)"):
        trace(control, "web/nope", "web/server")
    with pytest.raises(BadInput, match="no Pod web/server in cluster a"):
        trace(control, "web/client", "a:web/server")
    with pytest.raises(BadInput, match=r"a Pod in a, b; name one as CLUSTER:web/twin"):
        trace(control, "web/client", "web/twin")
    with pytest.raises(BadInput, match="Cluster zz: no such joined member cluster"):
        trace(control, "zz:web/client", "web/server")
    with pytest.raises(BadInput, match="no IPv6 address"):
        trace(control, "web/client", "web/server", family=6)
    with pytest.raises(BadInput, match="want a Pod NAMESPACE/POD"):
        trace(control, "web/client", "web/Server?x=1")


def test_an_unreachable_member_is_skipped_and_named(control: KubeStore, tmp_path: Path) -> None:
    with RunningApiServer(mkdir(tmp_path / "gone")) as gone:
        text = gone.kubeconfig.read_text()
    created = control.create(cluster("c", pods=("10.3.0.0/16",)))
    control.put_credentials(created.name, text)  # its API server has stopped
    assert trace(control, "web/client", "web/server").complete
    with pytest.raises(BadInput, match=r"\(a, b, c\); unreadable: c \("):
        trace(control, "web/nope", "web/server")


def test_kosmosctl_says_a_missing_pod_in_one_line(
    control: KubeStore, apiserver: RunningApiServer
) -> None:
    proc = subprocess.run(
        [KOSMOSCTL, "trace", "--kubeconfig", str(apiserver.kubeconfig), "web/nope", "web/server"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "web/nope" in proc.stderr
    ok = subprocess.run(
        [KOSMOSCTL, "trace", "--kubeconfig", str(apiserver.kubeconfig), "web/client", "web/server"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
