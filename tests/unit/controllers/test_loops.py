"""Network-manager, elector and member controller against a real (sqlite) store."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from clusterlink.api import Cluster, ClusterNode, NodeConfig, ObjectMeta
from clusterlink.controllers import network_manager
from clusterlink.controllers.elector import Elector, set_gateway
from clusterlink.controllers.leader import Leadership, LeaseTiming
from clusterlink.controllers.member import FactsError, sync_member
from clusterlink.controllers.network_manager import NetworkManager
from clusterlink.controllers.watch import Informer
from clusterlink.lab.facts import lab_facts
from clusterlink.store.base import StoreError
from clusterlink.store.counting import CountingStore
from clusterlink.store.sqlite import SqliteStore
from tests.unit.controllers.sim import SimClock, World
from tests.unit.planner.federation import cluster, node


@pytest.fixture
def store(tmp_path: Path) -> SqliteStore:
    return SqliteStore(tmp_path / "s.db")


def seed(store: SqliteStore) -> None:
    for c in (cluster("a", pods=("10.1.0.0/16",)), cluster("b", "gateway", pods=("10.2.0.0/16",))):
        created = store.create(c)
        store.update_status(created.model_copy(update={"status": c.status}))
    for n in (
        node("a", "n1", "192.168.1.1", pods=("10.1.1.0/24",)),
        node("b", "g", "192.168.2.1", gateway=True),
        node("b", "i", "192.168.2.2"),
    ):
        store.create(n)


def test_network_manager_writes_only_what_changed(store: SqliteStore) -> None:
    seed(store)
    nm = NetworkManager(store, "me")
    assert nm.sync(full=True) == (3, 0)
    assert nm.sync(full=False) == (0, 0)
    assert nm.sync(full=True) == (0, 0)  # stored specs equal the plan: nothing rewritten
    rev = store.revision()
    moved = store.get(ClusterNode, "a-n1")
    moved.spec.pod_cidrs = ["10.1.9.0/24"]
    store.update(moved)
    assert nm.sync(full=False) == (2, 0)  # b-g and b-i route the new block; a-n1 itself unchanged
    assert store.revision() > rev
    store.delete(ClusterNode, "b-i")
    assert nm.sync(full=False) == (1, 1)  # b-g loses its vx-local peer; b-i's NodeConfig goes
    assert sorted(nc.name for nc in store.list(NodeConfig)) == ["a-n1", "b-g"]


def test_network_manager_writes_only_the_nodeconfigs_one_node_change_affects(
    store: SqliteStore, tmp_path: Path
) -> None:
    """4 P2P clusters x 4 nodes: a node's new underlay IP is patched into the last plan
    (no full re-plan) and written to itself and the 12 nodes of other clusters - no more."""
    for c in range(4):
        created = store.create(cluster(f"c{c}", pods=(f"10.{c}.0.0/16",)))
        store.update_status(created.model_copy(update={"status": cluster(f"c{c}").status}))
        for n in range(4):
            store.create(node(f"c{c}", f"n{n}", f"172.16.{c}.{n + 1}", pods=(f"10.{c}.{n}.0/24",)))
    counted = CountingStore(store, tmp_path / "counts")
    nm = NetworkManager(counted, "me")
    assert nm.sync(full=True) == (16, 0)
    before = {nc.name: nc.spec for nc in store.list(NodeConfig)}
    moved = store.get(ClusterNode, "c1-n2")
    moved.spec.ip = "172.17.1.3"
    store.update(moved)
    counted.counts.clear()
    assert nm.sync(full=False) == (13, 0)
    assert nm.planner.last_reason is None and nm.planner.full_plans == 1
    assert counted.counts["patch_all *"] == 1  # the 13 in one write, read by the store itself
    assert counted.counts["update NodeConfig"] == counted.counts["create NodeConfig"] == 0
    assert counted.counts["get NodeConfig"] == 0
    after = {nc.name: nc.spec for nc in store.list(NodeConfig)}
    rewritten = sorted(n for n in after if after[n] != before[n])
    others = [f"c{c}-n{n}" for c in (0, 2, 3) for n in range(4)]
    assert rewritten == sorted(["c1-n2", *others])


def test_network_manager_writes_a_plan_in_batches(
    store: SqliteStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plan's NodeConfigs go to the store BATCH at a time, one write each (one sqlite
    transaction), not one write per NodeConfig."""
    monkeypatch.setattr(network_manager, "BATCH", 2)
    seed(store)
    counted = CountingStore(store, tmp_path / "counts")
    nm = NetworkManager(counted, "me")
    assert nm.sync(full=True) == (3, 0)
    assert counted.counts["patch_all *"] == 2  # 3 NodeConfigs: 2 + 1
    assert counted.counts["create NodeConfig"] == counted.counts["update NodeConfig"] == 0
    assert {nc.name: nc.metadata.labels for nc in store.list(NodeConfig)} == {
        "a-n1": {"kosmos.io/cluster": "a"},
        "b-g": {"kosmos.io/cluster": "b"},
        "b-i": {"kosmos.io/cluster": "b"},
    }


def test_network_manager_plans_a_burst_once_it_is_quiet_or_has_waited_enough(
    store: SqliteStore,
) -> None:
    """A lone change is planned after `coalesce`; a stream of changes (joins arriving) is
    planned when it pauses, or every `settle` seconds while it does not - longer after a
    sync that wrote many NodeConfigs (`settle_per_write` each)."""
    stop = threading.Event()
    waker = Informer(store, (Cluster,), stop)
    nm = NetworkManager(store, "me", coalesce=0.1, settle=0.6, settle_per_write=0.02)
    assert nm.wait_quiet(waker, stop) < 0.3  # nothing more came

    def keep_changing(until: float) -> None:
        while time.monotonic() < until:
            waker.poke()
            time.sleep(0.02)

    for burst, low, high in ((0.3, 0.35, 0.55), (2.0, 0.55, 0.9)):
        poker = threading.Thread(target=keep_changing, args=(time.monotonic() + burst,))
        poker.start()
        waited = nm.wait_quiet(waker, stop)
        poker.join()
        assert low <= waited <= high, (burst, waited)
    nm.last_written = 60  # the last sync wrote 60 NodeConfigs: 60 x 0.02 s = 1.2 s
    poker = threading.Thread(target=keep_changing, args=(time.monotonic() + 2.0,))
    poker.start()
    waited = nm.wait_quiet(waker, stop)
    poker.join()
    assert 1.15 <= waited <= 1.5, waited
    stop.set()
    assert nm.wait_quiet(waker, stop) < 0.01  # stopping: no wait


class FailingOnce(SqliteStore):
    """A store whose next NodeConfig write fails (once armed)."""

    armed = False

    def patch_all(self, objects):  # type: ignore[no-untyped-def]
        if self.armed and any(obj.KIND == "NodeConfig" for obj in objects):
            self.armed = False
            raise StoreError("injected")
        return super().patch_all(objects)


def test_network_manager_compares_with_the_store_after_a_failed_write(tmp_path: Path) -> None:
    """The planner has moved on when a write fails: the next sync compares with the store,
    so the NodeConfig that was not written is not forgotten."""
    store = FailingOnce(tmp_path / "s.db")
    seed(store)
    nm = NetworkManager(store, "me")
    nm.sync(full=True)
    moved = store.get(ClusterNode, "a-n1")
    moved.spec.ip = "192.168.1.9"
    store.update(moved)
    store.armed = True
    with pytest.raises(StoreError):
        nm.sync(full=False)
    assert nm.sync(full=False) == (2, 0)  # what the failed sync did not write, written now
    assert nm.sync(full=True) == (0, 0)


def test_network_manager_repairs_an_edited_nodeconfig_on_full_sync(store: SqliteStore) -> None:
    seed(store)
    nm = NetworkManager(store, "me")
    nm.sync(full=True)
    nc = store.get(NodeConfig, "a-n1")
    store.update(nc.model_copy(update={"spec": nc.spec.model_copy(update={"routes": []})}))
    assert nm.sync(full=False) == (0, 0)  # the plan did not change...
    assert nm.sync(full=True) == (1, 0)  # ...the periodic full comparison finds the edit
    store.create(NodeConfig(metadata=ObjectMeta(name="stray")))
    assert nm.sync(full=True) == (0, 1)


def test_set_gateway_moves_the_role_within_the_cluster_only(store: SqliteStore) -> None:
    seed(store)
    assert set_gateway(store, "b", "b-i") == 2
    roles = {cn.name: cn.spec.roles for cn in store.list(ClusterNode)}
    assert roles == {"a-n1": [], "b-g": [], "b-i": ["gateway"]}
    assert set_gateway(store, "b", "b-i") == 0


def test_elector_gives_up_when_its_underlay_is_down(store: SqliteStore) -> None:
    seed(store)
    timing = LeaseTiming(duration=2, renew_deadline=1.5, retry=0.25)
    link = {"b-g": True}
    g = Elector(store, "b", "g", timing=timing, underlay_up=lambda: link["b-g"])
    i = Elector(store, "b", "i", timing=timing)
    assert g.step() and not i.step()
    link["b-g"] = False
    assert not g.step()  # releases at once...
    assert i.step()  # ...so the other candidate takes over without waiting for expiry
    roles = {
        cn.name: cn.spec.is_gateway for cn in store.list(ClusterNode) if cn.spec.cluster_name == "b"
    }
    assert roles == {"b-g": False, "b-i": True}
    link["b-g"] = True
    assert not g.step()  # the lease is held by b-i now


def test_leadership_steps_down_when_another_holds_the_lease(store: SqliteStore) -> None:
    world = World()
    timing = LeaseTiming(duration=2, renew_deadline=1.5, retry=0.25)
    a = Leadership(store, "x", "a", timing, clock=SimClock(world, origin=5.0))
    b = Leadership(store, "x", "b", timing, clock=SimClock(world, origin=900.0))
    assert a.attempt() and not b.attempt()
    world.now += 0.5
    assert a.attempt()  # renewed less than a third of the lease ago: no store write needed
    world.now += 1.0
    assert not a.is_leader  # a froze: 1.5 s after it began its last renewal it stops leading
    world.now += 1.0
    assert b.attempt()  # b has seen the same record for 2.5 s
    assert not a.attempt()  # a wakes up, sees b holding: not leader any more


def test_member_controller_syncs_nodes_and_cidrs(store: SqliteStore, tmp_path: Path) -> None:
    store.create(Cluster(metadata=ObjectMeta(name="m")))
    handle = tmp_path / "m.yaml"
    data = {
        "apiVersion": "lab.clusterlink.io/v1",
        "kind": "LabClusterHandle",
        "lab": "l",
        "cluster": "m",
        "podCIDRs": ["10.5.0.0/16"],
        "serviceCIDRs": ["10.105.0.0/16"],
        "nodes": [
            {"name": "n1", "podCIDRs": ["10.5.1.0/24"]},
            {"name": "n2", "podCIDRs": ["10.5.2.0/24"]},
        ],
    }
    handle.write_text(yaml.safe_dump(data))
    assert sync_member(store, "m", lab_facts(handle)) == 3
    n1 = store.get(ClusterNode, "m-n1")
    assert n1.metadata.labels == {"kosmos.io/cluster": "m"} and n1.spec.pod_cidrs == ["10.5.1.0/24"]
    n1.spec.interface_name, n1.spec.ip, n1.spec.roles = "eth0", "192.168.5.1", ["gateway"]
    store.update(n1)
    assert sync_member(store, "m", lab_facts(handle)) == 0  # keeps what the agent/elector set
    assert store.get(ClusterNode, "m-n1").spec.roles == ["gateway"]
    data["nodes"] = data["nodes"][:1]  # type: ignore[index]
    handle.write_text(yaml.safe_dump(data))
    assert sync_member(store, "m", lab_facts(handle)) == 1  # n2 is gone
    assert [cn.name for cn in store.list(ClusterNode)] == ["m-n1"]
    assert store.get(Cluster, "m").status.cluster_link_status.service_cidrs == ["10.105.0.0/16"]


def test_elector_marks_itself_as_soon_as_its_clusternode_appears(store: SqliteStore) -> None:
    """It may win the lease before the controller created the ClusterNodes; it must not wait
    for the periodic role re-check once they appear."""
    store.create(cluster("b", "gateway"))
    timing = LeaseTiming(duration=2, renew_deadline=1.5, retry=0.25)
    g = Elector(store, "b", "g", timing=timing)
    assert g.step()  # leads, but there is nothing to mark yet
    store.create(node("b", "g", "192.168.2.1"))
    assert g.step()
    assert store.get(ClusterNode, "b-g").spec.is_gateway


def test_underlay_check_follows_the_clusternode_nic(store: SqliteStore) -> None:
    from clusterlink.controllers.elector import UnderlayCheck

    seen: list[str] = []
    links = {"eth0": (True, True), "eth1": (True, False)}

    def state(nic: str) -> tuple[bool, bool] | None:
        seen.append(nic)
        return links.get(nic)

    check = UnderlayCheck(store, "b-g", state, refresh=0.0)
    assert check() and seen[-1] == "eth0"  # no ClusterNode yet: eth0
    store.create(node("b", "g", "192.168.2.1", iface="eth1"))
    assert not check() and seen[-1] == "eth1"  # up, but no carrier
    assert not UnderlayCheck(store, "b-g", state, interface="eth9")()  # no such link


def test_network_manager_plans_from_its_watch_fed_cache(store: SqliteStore, tmp_path: Path) -> None:
    """Running, it lists Clusters and ClusterNodes once; afterwards a change arrives by watch
    and is planned, and an idle federation costs no LIST at all."""
    seed(store)
    counted = CountingStore(store, tmp_path / "counts")
    stop = threading.Event()
    nm = NetworkManager(counted, "me")
    thread = threading.Thread(target=nm.run, args=(stop, LeaseTiming(2.0, 1.5, 0.1)), daemon=True)
    thread.start()
    try:
        wait_for(lambda: len(store.list(NodeConfig)) == 3)
        moved = store.get(ClusterNode, "a-n1")
        moved.spec.pod_cidrs = ["10.1.9.0/24"]
        store.update(moved)
        wait_for(lambda: "10.1.9.0/24" in str(store.get(NodeConfig, "b-g").spec.routes))
        store.delete(ClusterNode, "b-i")
        wait_for(lambda: sorted(nc.name for nc in store.list(NodeConfig)) == ["a-n1", "b-g"])
        time.sleep(1.0)  # idle: ten lease retry periods
    finally:
        stop.set()
        thread.join(10)
    assert counted.counts["list Cluster"] == 1 and counted.counts["list ClusterNode"] == 1


def wait_for(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_lab_facts_reread_the_handle_only_when_it_changed(
    store: SqliteStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from clusterlink.lab import facts as lab_facts_module

    handle = tmp_path / "m.yaml"
    data: dict[str, object] = {
        "apiVersion": "lab.clusterlink.io/v1",
        "kind": "LabClusterHandle",
        "lab": "l",
        "cluster": "m",
        "podCIDRs": ["10.5.0.0/16"],
        "serviceCIDRs": [],
        "nodes": [{"name": "n1", "podCIDRs": ["10.5.1.0/24"]}],
    }
    handle.write_text(yaml.safe_dump(data))
    reads: list[str] = []
    real = lab_facts_module.load_handle
    monkeypatch.setattr(lab_facts_module, "load_handle", lambda p: reads.append(str(p)) or real(p))
    source = lab_facts_module.LabFacts(handle, store)
    cluster = Cluster(metadata=ObjectMeta(name="m"))
    first = source.facts(cluster)
    assert source.facts(cluster) is first and len(reads) == 1
    data["nodes"] = [{"name": "n1", "podCIDRs": ["10.5.1.0/24"]}, {"name": "n2"}]
    handle.write_text(yaml.safe_dump(data))
    assert [n.name for n in source.facts(cluster).nodes] == ["n1", "n2"] and len(reads) == 2
    handle.unlink()
    with pytest.raises(FactsError):
        source.facts(cluster)
