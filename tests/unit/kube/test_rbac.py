"""Least privilege that works: every component, under its own service account, does its job
against the double with RBAC enforced from the installed manifests - no request is refused.
(The manifests test proves there is no wildcard; this proves nothing needed is missing.)"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import yaml

from clusterlink.agent.fake import FakeFirewall, FakeKernel
from clusterlink.agent.service import Agent
from clusterlink.api import Cluster, ClusterNode, NodeConfig, ObjectMeta
from clusterlink.api.cluster import ClusterLinkStatus, ClusterStatus
from clusterlink.controllers.elector import Elector
from clusterlink.controllers.member import MemberController
from clusterlink.controllers.network_manager import LEASE, NetworkManager
from clusterlink.federation import kube as kube_federation
from clusterlink.kube import deploy as kdeploy
from clusterlink.kube.member import KubeFacts
from clusterlink.kubeclient.api import KubeApi
from clusterlink.kubeclient.target import Target
from clusterlink.store.base import StoreError
from clusterlink.store.kube import KubeStore
from clusterlink.store.lease import try_acquire_or_renew
from tests.kubeapi import SA_PREFIX, RunningApiServer, kubeconfig_for
from tests.unit.kube.test_member import seed

CLUSTER = "kosmos-control-cluster"


def as_account(server: RunningApiServer, tmp: Path, account: str) -> KubeApi:
    path = tmp / f"{account}.kubeconfig"
    token = f"{SA_PREFIX}kosmos-system:{account}"
    path.write_text(yaml.safe_dump(kubeconfig_for(server.url, token=token)))
    return KubeApi(Target(str(path)), retries=0)


def install(server: RunningApiServer) -> KubeApi:
    admin = KubeApi(Target(str(server.kubeconfig)))
    store = KubeStore(admin)
    options = kdeploy.KubeLinkOptions(network_type="gateway", cni="calico", default_nic="eth0")
    kube_federation.install(
        admin, store, server.kubeconfig.read_text(), CLUSTER, options, lambda _: None
    )
    other = Cluster(
        metadata=ObjectMeta(name="remote"),
        status=ClusterStatus(cluster_link_status=ClusterLinkStatus(pod_cidrs=["10.77.0.0/16"])),
    )
    store.apply_all([other])
    seed(admin)  # nodes, Calico pools and blocks, the kube-apiserver Pod
    return admin


def test_every_component_works_under_its_own_account(
    apiserver: RunningApiServer, tmp_path: Path
) -> None:
    install(apiserver)
    state = apiserver.server.state
    assert state is not None

    # The member controller: reads the member's Nodes/Calico/apiserver Pod, writes ClusterNodes,
    # the Cluster's status and IPPools.
    ctrl = as_account(apiserver, tmp_path, "clusterlink-controller")
    ctrl_store = KubeStore(ctrl)
    controller = MemberController(ctrl_store, CLUSTER, KubeFacts(ctrl, ctrl_store))
    assert controller.step() > 0
    assert [cn.name for cn in ctrl_store.list(ClusterNode)] == [
        f"{CLUSTER}-node1",
        f"{CLUSTER}-node2",
    ]
    assert state.denied == []

    # The agent: detects its NIC into its ClusterNode, applies its NodeConfig, writes status.
    agent_store = KubeStore(as_account(apiserver, tmp_path, "clusterlink-agent"))
    # The elector: takes the cluster's Lease and marks its ClusterNode gateway.
    elector_store = KubeStore(as_account(apiserver, tmp_path, "clusterlink-elector"))
    kernel = FakeKernel()
    kernel.add_nic("eth0", ("192.168.0.1/24",))
    agent = Agent(agent_store, f"{CLUSTER}-node1", kernel, FakeFirewall())
    agent.update_cluster_node()
    assert Elector(elector_store, CLUSTER, "node1").step()
    assert agent_store.get(ClusterNode, f"{CLUSTER}-node1").spec.is_gateway

    # The network-manager: its Lease, then plans and writes NodeConfigs.
    nm_store = KubeStore(as_account(apiserver, tmp_path, "clusterlink-network-manager"))
    now = dt.datetime.now(dt.UTC)
    assert try_acquire_or_renew(nm_store, LEASE, "nm-0", 15, now).held
    written, _ = NetworkManager(nm_store, "nm-0").sync(full=True)
    assert written >= 1
    agent.sync()
    nc = agent_store.get(NodeConfig, f"{CLUSTER}-node1")
    assert nc.status.phase == "Synced", nc.status.message
    assert state.denied == []


def test_a_missing_grant_is_refused(apiserver: RunningApiServer, tmp_path: Path) -> None:
    """The check itself: the agent may not write ClusterNodes of the cluster object."""
    install(apiserver)
    agent_store = KubeStore(as_account(apiserver, tmp_path, "clusterlink-agent"))
    try:
        agent_store.delete(Cluster, "remote")
    except StoreError as exc:
        assert "HTTP 403" in str(exc) and "cannot delete resource" in str(exc)
    else:
        raise AssertionError("a member account deleted a Cluster")
    floater = KubeStore(as_account(apiserver, tmp_path, "clusterlink-floater"))
    try:
        floater.list(Cluster)
    except StoreError as exc:
        assert "cannot list" in str(exc)
    else:
        raise AssertionError("an account without any binding listed Clusters")
