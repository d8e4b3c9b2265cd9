"""Least privilege, proven against the API server double with the shipped RBAC and admission
policy applied (tests/kubeauth.py evaluates the policy's CEL with cel-python): two members, A
and B, joined by `join`; each runs its real member-side code (controller, agent, elector) with
the kubeconfig `join` handed it and no request of theirs is refused; A's token cannot read any
credentials nor write anything of B's; the network-manager's account reads the credentials."""

from __future__ import annotations

import base64
import copy
import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from clusterlink.agent.fake import FakeFirewall, FakeKernel
from clusterlink.agent.service import Agent
from clusterlink.api import Cluster, ClusterNode, NodeConfig, ObjectMeta
from clusterlink.api.cluster import ClusterLinkStatus, ClusterStatus
from clusterlink.api.clusternode import ClusterNodeSpec
from clusterlink.controllers.elector import Elector
from clusterlink.controllers.member import MemberController
from clusterlink.controllers.network_manager import LEASE, NetworkManager
from clusterlink.federation import kube as kube_federation
from clusterlink.kube import deploy as kdeploy
from clusterlink.kube import manifests as m
from clusterlink.kube.member import KubeFacts
from clusterlink.kubeclient.api import MERGE_PATCH, KubeApi
from clusterlink.kubeclient.errors import ApiError
from clusterlink.kubeclient.target import Target
from clusterlink.store.kube import KubeStore
from clusterlink.store.lease import try_acquire_or_renew
from tests.kubeapi import RunningApiServer, State
from tests.unit.kube.test_member import seed

CN = "/apis/kosmos.io/v1alpha1/clusternodes"
CLUSTERS = "/apis/kosmos.io/v1alpha1/clusters"
NODECONFIGS = "/apis/kosmos.io/v1alpha1/nodeconfigs"
LEASES = "/apis/coordination.k8s.io/v1/namespaces/kosmos-system/leases"
SECRETS = "/api/v1/namespaces/kosmos-system/secrets"
POLICY = "ValidatingAdmissionPolicy 'clusterlink-member-scope'"
CNI = {"a": "calico", "b": "flannel"}
SERVICES = {"b": ["10.96.0.0/16"]}  # a: from its kube-apiserver Pod


@dataclass
class Federation:
    control: RunningApiServer
    admin: KubeApi
    store: KubeStore  # the admin's
    members: dict[str, RunningApiServer]
    tmp: Path

    @property
    def state(self) -> State:
        assert self.control.server.state is not None
        return self.control.server.state

    def member_kubeconfig(self, cluster: str) -> str:
        """The control kubeconfig `join` put into the member cluster (what its pods mount)."""
        secret = next(
            s for s in self.members[cluster].objects("secrets")
            if s["metadata"]["name"] == m.CONTROL_SECRET
        )  # fmt: skip
        return base64.b64decode(secret["data"]["kubeconfig"]).decode()

    def as_member(self, cluster: str) -> KubeApi:
        return KubeApi(Target(data=self.member_kubeconfig(cluster)), retries=0)

    def as_account(self, account: str) -> KubeApi:
        path = self.control.kubeconfig_with(
            self.tmp / f"{account}.kubeconfig", self.control.token(account)
        )
        return KubeApi(Target(str(path)), retries=0)


@pytest.fixture
def federation(tmp_path: Path) -> Iterator[Federation]:
    """install (the control plane: roles, the admission policy), then `join` of a and b, each
    a member cluster of its own with two nodes (a: Calico, b: flannel and another service
    CIDR, so that their ranges do not overlap)."""
    dirs = {name: tmp_path / name for name in ("control", "a", "b")}
    for d in dirs.values():
        d.mkdir()
    with (
        RunningApiServer(dirs["control"], anonymous_admin=False) as control,
        RunningApiServer(dirs["a"]) as a,
        RunningApiServer(dirs["b"]) as b,
    ):
        admin = KubeApi(Target(str(control.kubeconfig)), field_manager=kdeploy.FIELD_MANAGER)
        store = KubeStore(KubeApi(Target(str(control.kubeconfig))))
        kdeploy.apply(admin, m.control_plane())
        for name, server in (("a", a), ("b", b)):
            options = kdeploy.KubeLinkOptions(network_type="gateway", cni=CNI[name],
                                              default_nic="eth0")  # fmt: skip
            api = KubeApi(Target(str(server.kubeconfig)), field_manager=kdeploy.FIELD_MANAGER)
            seed(api, CNI[name])
            kube_federation.join(api, admin, store, name, server.kubeconfig.read_text(),
                                 kdeploy.control_cluster_of(str(control.kubeconfig)), options,
                                 lambda _: None)  # fmt: skip
        yield Federation(control, admin, store, {"a": a, "b": b}, tmp_path)
        store.close()
        admin.close()


def run_member(fed: Federation, cluster: str) -> Agent:
    """The member's controller, its agent on node1 and its elector, on the kubeconfig `join`
    gave it; the member cluster's own API as the controller's in-cluster identity would be."""
    store = KubeStore(fed.as_member(cluster))
    own = KubeApi(Target(str(fed.members[cluster].kubeconfig)), field_manager="controller")
    facts = KubeFacts(own, store, SERVICES.get(cluster))
    assert MemberController(store, cluster, facts).step() > 0
    assert sorted(cn.name for cn in store.list(ClusterNode, {"kosmos.io/cluster": cluster})) == [
        f"{cluster}-node1",
        f"{cluster}-node2",
    ]
    kernel = FakeKernel()
    kernel.add_nic("eth0", ("192.168.0.1/24",) if cluster == "a" else ("192.168.1.1/24",))
    agent = Agent(store, f"{cluster}-node1", kernel, FakeFirewall())
    agent.update_cluster_node()
    assert Elector(store, cluster, "node1").step()
    assert store.get(ClusterNode, f"{cluster}-node1").spec.is_gateway
    return agent


def network_manager(fed: Federation) -> KubeStore:
    nm_store = KubeStore(fed.as_account("clusterlink-network-manager"))
    assert try_acquire_or_renew(nm_store, LEASE, "nm-0", 15, dt.datetime.now(dt.UTC)).held
    written, _ = NetworkManager(nm_store, "nm-0").sync(full=True)
    assert written == 2  # node1 of a and b: the agents detected their NICs
    return nm_store


def test_each_member_does_its_job_under_its_own_token(federation: Federation) -> None:
    agents = {c: run_member(federation, c) for c in ("a", "b")}
    assert federation.state.denied == []
    network_manager(federation)
    for cluster, agent in agents.items():
        report = agent.sync()  # reads its NodeConfig, applies it, writes its status
        nc = KubeStore(federation.as_member(cluster)).get(NodeConfig, f"{cluster}-node1")
        assert nc.metadata.labels == {"kosmos.io/cluster": cluster}  # set by the network-manager
        assert nc.status.phase == "Synced", (report, nc.status.message)
    assert federation.state.denied == []
    # What `join` handed each member: the control cluster and its own account's token.
    for cluster in ("a", "b"):
        mounted = yaml.safe_load(federation.member_kubeconfig(cluster))
        assert [u["name"] for u in mounted["users"]] == [f"clusterlink-member-{cluster}"]
        assert mounted["users"][0]["user"]["token"] != "test-token"


def _status(exc: ApiError) -> tuple[int | None, str]:
    return exc.code, str(exc)


def refused(call: Any) -> ApiError:
    with pytest.raises(ApiError) as caught:
        call()
    return caught.value


def test_member_a_cannot_touch_member_b(federation: Federation) -> None:
    """Every write of B's objects with A's token is a 403, from RBAC or from the admission
    policy; B's objects are unchanged afterwards."""
    run_member(federation, "a")
    run_member(federation, "b")
    network_manager(federation)
    a = federation.as_member("a")
    admin = federation.admin
    b_node = admin.request("GET", f"{CN}/b-node1")
    b_cluster = admin.request("GET", f"{CLUSTERS}/b")
    b_config = admin.request("GET", f"{NODECONFIGS}/b-node1")
    b_lease = admin.request("GET", f"{LEASES}/clusterlink-member-b")
    nm_lease = admin.request("GET", f"{LEASES}/network-manager")
    before = {p: list(federation.control.objects(p))
              for p in ("clusternodes", "clusters", "nodeconfigs", "leases", "secrets")}  # fmt: skip

    def changed(obj: dict[str, Any], **spec: Any) -> dict[str, Any]:
        out = copy.deepcopy(obj)
        out["spec"] = {**out.get("spec", {}), **spec}
        return out

    stolen = changed(b_node, clusterName="a")
    forged_node = {
        "apiVersion": "kosmos.io/v1alpha1", "kind": "ClusterNode",
        "metadata": {"name": "b-node9", "labels": {"kosmos.io/cluster": "b"}},
        "spec": {"clusterName": "b", "nodeName": "node9", "ip": "192.168.1.9"},
    }  # fmt: skip
    squatter = copy.deepcopy(forged_node)
    squatter["spec"]["clusterName"] = "a"  # A's by spec, but B's name and label
    mislabelled = copy.deepcopy(forged_node)
    mislabelled["metadata"] = {"name": "a-node9", "labels": {"kosmos.io/cluster": "b"}}
    mislabelled["spec"]["clusterName"] = "a"
    b_status = copy.deepcopy(b_cluster)
    b_status.setdefault("status", {})["clusterLinkStatus"] = {"podCIDRs": ["10.0.0.0/8"]}
    b_config_status = copy.deepcopy(b_config)
    b_config_status["status"] = {"phase": "Synced", "message": "forged"}
    take = lambda lease: changed(lease, holderIdentity="a-node1")  # noqa: E731
    new_lease = {
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "clusterlink-member-c", "namespace": "kosmos-system"},
        "spec": {"holderIdentity": "a-node1"},
    }  # fmt: skip
    patch = json.dumps({"spec": {"ip": "10.6.6.6"}}).encode()
    status_patch = json.dumps({"status": {"clusterLinkStatus": {"podCIDRs": ["1.0.0.0/8"]}}})

    attempts: dict[str, tuple[Any, str]] = {
        # Credentials: members read no Secret at all (RBAC).
        "read B's credentials": (lambda: a.request("GET", f"{SECRETS}/clusterlink-kubeconfig-b"), "RBAC"),
        "read its own credentials": (lambda: a.request("GET", f"{SECRETS}/clusterlink-kubeconfig-a"), "RBAC"),
        "list Secrets": (lambda: a.request("GET", SECRETS), "RBAC"),
        # ClusterNodes (admission).
        "create a ClusterNode of B": (lambda: a.request("POST", CN, body=forged_node), POLICY),
        "create one named and labelled as B's": (lambda: a.request("POST", CN, body=squatter), POLICY),
        "create its own labelled as B's": (lambda: a.request("POST", CN, body=mislabelled), POLICY),
        "update B's ClusterNode": (lambda: a.request("PUT", f"{CN}/b-node1", body=changed(b_node, ip="10.6.6.6")), POLICY),
        "move B's ClusterNode to A": (lambda: a.request("PUT", f"{CN}/b-node1", body=stolen), POLICY),
        "patch B's ClusterNode": (lambda: a.request("PATCH", f"{CN}/b-node1", body=patch, content_type=MERGE_PATCH), POLICY),
        "delete B's ClusterNode": (lambda: a.request("DELETE", f"{CN}/b-node1"), POLICY),
        # Cluster: status by admission, the rest by RBAC.
        "update B's Cluster status": (lambda: a.request("PUT", f"{CLUSTERS}/b/status", body=b_status), POLICY),
        "patch B's Cluster status": (lambda: a.request("PATCH", f"{CLUSTERS}/b/status", body=status_patch.encode(), content_type=MERGE_PATCH), POLICY),
        "update B's Cluster": (lambda: a.request("PUT", f"{CLUSTERS}/b", body=b_status), "RBAC"),
        "delete B's Cluster": (lambda: a.request("DELETE", f"{CLUSTERS}/b"), "RBAC"),
        # NodeConfigs: status by admission, the object itself is the network-manager's.
        "update B's NodeConfig status": (lambda: a.request("PUT", f"{NODECONFIGS}/b-node1/status", body=b_config_status), POLICY),
        "update B's NodeConfig": (lambda: a.request("PUT", f"{NODECONFIGS}/b-node1", body=b_config), "RBAC"),
        # Leases (admission; deleting is nobody's but the admin's).
        "take B's Lease": (lambda: a.request("PUT", f"{LEASES}/clusterlink-member-b", body=take(b_lease)), POLICY),
        "take the network-manager's Lease": (lambda: a.request("PUT", f"{LEASES}/network-manager", body=take(nm_lease)), POLICY),
        "create another cluster's Lease": (lambda: a.request("POST", LEASES, body=new_lease), POLICY),
        "delete B's Lease": (lambda: a.request("DELETE", f"{LEASES}/clusterlink-member-b"), "RBAC"),
    }  # fmt: skip
    for what, (call, by) in attempts.items():
        exc = refused(call)
        assert exc.code == 403, (what, _status(exc))
        assert exc.reason == "Forbidden", (what, exc.reason)
        if by == "RBAC":
            assert 'User "system:serviceaccount:kosmos-system:clusterlink-member-a" cannot' in str(
                exc
            ), what
        else:
            assert POLICY in str(exc) and "denied request" in str(exc), (what, str(exc))
    assert len(attempts) == 20
    assert len(federation.state.denied) == len(attempts)
    after = {p: list(federation.control.objects(p)) for p in before}
    for plural, objects in before.items():
        by_name = {o["metadata"]["name"]: o for o in after[plural]}
        for obj in objects:
            assert by_name.pop(obj["metadata"]["name"]) == obj  # nothing of B's changed
        assert by_name == {}, plural  # nothing new


def test_the_network_manager_reads_the_credentials(federation: Federation) -> None:
    nm = federation.as_account("clusterlink-network-manager")
    for cluster in ("a", "b"):
        secret = nm.request("GET", f"{SECRETS}/clusterlink-kubeconfig-{cluster}")
        text = base64.b64decode(secret["data"]["kubeconfig"]).decode()
        assert text == federation.members[cluster].kubeconfig.read_text()
    # And the Clusters members read carry none.
    for cluster in KubeStore(federation.as_member("a")).list(Cluster):
        assert cluster.spec.kubeconfig is None
    assert federation.state.denied == []


def test_the_denials_come_from_the_applied_policy(federation: Federation) -> None:
    """The double denies what the applied policy's CEL says: the same forged write passes once
    the policy holds no validations, and is denied again with the shipped one."""
    a = federation.as_member("a")
    forged = ClusterNode(
        metadata=ObjectMeta(name="b-node7", labels={"kosmos.io/cluster": "b"}),
        spec=ClusterNodeSpec(cluster_name="b", node_name="node7", ip="192.168.1.7"),
    ).to_dict()
    exc = refused(lambda: a.request("POST", CN, body=forged))
    assert exc.code == 403 and "only ClusterNodes of its own cluster" in str(exc)
    policy, _ = m.member_scope_policy()
    empty = copy.deepcopy(policy)
    empty["spec"]["validations"] = [{"expression": "true"}]
    kdeploy.apply(federation.admin, [empty])
    assert a.request("POST", CN, body=forged)["spec"]["clusterName"] == "b"
    kdeploy.apply(federation.admin, [policy])
    forged["metadata"]["name"] = "b-node8"
    assert refused(lambda: a.request("POST", CN, body=forged)).code == 403


def test_a_token_dies_with_its_account_and_no_token_is_anonymous(federation: Federation) -> None:
    a = federation.as_member("a")
    assert a.request("GET", f"{CLUSTERS}/a")["metadata"]["name"] == "a"
    kdeploy.remove(federation.admin, m.member_identity("a"))  # what unjoin does at its end
    exc = refused(lambda: a.request("GET", f"{CLUSTERS}/a"))
    assert exc.code == 401
    path = federation.tmp / "anonymous.kubeconfig"
    config = yaml.safe_load(federation.control.kubeconfig.read_text())
    del config["users"][0]["user"]["token"]
    path.write_text(yaml.safe_dump(config))
    anonymous = KubeApi(Target(str(path)), retries=0)
    exc = refused(lambda: anonymous.request("GET", CLUSTERS))
    assert exc.code == 403 and "system:anonymous" in str(exc)


def test_a_cluster_given_with_its_kubeconfig_is_stored_without_it(federation: Federation) -> None:
    """Kosmos' `spec.kubeconfig` on input (kosmosctl apply of a Kosmos manifest): the store
    moves it into the cluster's Secret; members never see it."""
    text = federation.members["a"].kubeconfig.read_text()
    given = Cluster(
        metadata=ObjectMeta(name="c"),
        status=ClusterStatus(cluster_link_status=ClusterLinkStatus(pod_cidrs=["10.99.0.0/16"])),
    )
    given.spec.kubeconfig = base64.b64encode(text.encode()).decode()
    federation.store.apply_all([given])
    assert federation.store.get(Cluster, "c").spec.kubeconfig is None
    assert federation.store.credentials("c") == text
    assert all(o["spec"].get("kubeconfig") is None for o in federation.control.objects("clusters"))
    federation.store.delete(Cluster, "c")
    assert federation.store.credentials("c") is None
