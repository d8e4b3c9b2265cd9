"""The Store contract: every backend must pass all of this."""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing
import threading
from pathlib import Path

import pytest

from clusterlink.api import (
    Cluster,
    ClusterNode,
    NodeConfig,
    NodeConfigSpec,
    ObjectMeta,
    Route,
)
from clusterlink.api.clusternode import ClusterNodeSpec
from clusterlink.store.base import AlreadyExists, Conflict, Expired, NotFound, Store
from clusterlink.store.lease import release, try_acquire_or_renew
from clusterlink.store.sqlite import SqliteStore
from tests.unit.store import workers


def cluster(name: str = "c1", **labels: str) -> Cluster:
    return Cluster(metadata=ObjectMeta(name=name, labels=labels))


def node(name: str, cluster_name: str) -> ClusterNode:
    return ClusterNode(
        metadata=ObjectMeta(name=name, labels={"kosmos.io/cluster": cluster_name}),
        spec=ClusterNodeSpec(cluster_name=cluster_name, node_name=name, ip="10.0.0.1"),
    )


def test_create_get_list_and_server_fields(store: Store) -> None:
    created = store.create(cluster("c1"))
    meta = created.metadata
    assert meta.uid and meta.creation_timestamp and meta.generation == 1
    assert int(meta.resource_version or 0) > 0
    assert store.get(Cluster, "c1") == created
    with pytest.raises(AlreadyExists):
        store.create(cluster("c1"))
    store.create(node("c1-a", "c1"))
    store.create(node("c2-a", "c2"))
    assert [n.name for n in store.list(ClusterNode)] == ["c1-a", "c2-a"]
    assert [n.name for n in store.list(ClusterNode, {"kosmos.io/cluster": "c2"})] == ["c2-a"]
    listing = store.list(Cluster)
    assert listing.resource_version >= int(meta.resource_version or 0)


def test_revisions_strictly_increase_across_kinds(store: Store) -> None:
    revs = [
        int(store.create(cluster("a")).metadata.resource_version or 0),
        int(store.create(node("a-n", "a")).metadata.resource_version or 0),
        int(store.create(cluster("b")).metadata.resource_version or 0),
    ]
    assert revs == sorted(set(revs))


def test_a_kind_revision_moves_with_its_kind_only(store: Store) -> None:
    """Where a backend keeps one (SQLite; Kubernetes says None), a kind's revision is its last
    change's, and another kind's writes leave it."""
    a = store.create(cluster("a"))
    before = store.kind_revision(Cluster)
    if before is None:
        assert isinstance(store, SqliteStore) is False
        return
    assert before == int(a.metadata.resource_version or 0)
    store.create(node("a-n", "a"))
    assert store.kind_revision(Cluster) == before
    assert store.kind_revision(ClusterNode) == store.revision()
    store.delete(Cluster, "a")
    after = store.kind_revision(Cluster)
    assert after is not None and after > before


def test_update_is_compare_and_swap(store: Store) -> None:
    first = store.create(cluster("c1"))
    a = first.model_copy(deep=True)
    b = first.model_copy(deep=True)
    a.metadata.labels["x"] = "1"
    b.metadata.labels["x"] = "2"
    store.update(a)
    with pytest.raises(Conflict, match="stale"):
        store.update(b)
    assert store.get(Cluster, "c1").metadata.labels == {"x": "1"}


def test_spec_change_bumps_generation_status_does_not(store: Store) -> None:
    obj = store.create(NodeConfig(metadata=ObjectMeta(name="n1")))
    assert obj.metadata.generation == 1
    obj.metadata.labels["a"] = "b"
    obj = store.update(obj)
    assert obj.metadata.generation == 1  # metadata only
    obj.status.phase = "Synced"
    obj = store.update_status(obj)
    assert obj.metadata.generation == 1 and obj.status.phase == "Synced"
    route = Route(cidr="10.0.0.0/8", gw="1.1.1.1", dev="vx-bridge")
    obj = store.update(obj.model_copy(update={"spec": NodeConfigSpec(routes=[route])}))
    assert obj.metadata.generation == 2
    assert obj.status.phase == "Synced"  # update() keeps status


def test_update_ignores_status_and_update_status_ignores_spec(store: Store) -> None:
    obj = store.create(NodeConfig(metadata=ObjectMeta(name="n1")))
    with_status = obj.model_copy(deep=True)
    with_status.status.phase = "Error"
    stored = store.update(with_status)
    assert stored.status.phase == ""
    stored.status.phase = "Synced"
    stored.metadata.labels["ignored"] = "yes"
    after = store.update_status(stored)
    assert after.status.phase == "Synced" and "ignored" not in after.metadata.labels


def test_no_op_update_makes_no_revision(store: Store) -> None:
    obj = store.create(cluster("c1"))
    again = store.update(obj)
    assert again.metadata.resource_version == obj.metadata.resource_version


def test_delete(store: Store) -> None:
    store.create(cluster("c1"))
    gone = store.delete(Cluster, "c1")
    assert gone.name == "c1"
    with pytest.raises(NotFound):
        store.get(Cluster, "c1")
    with pytest.raises(NotFound):
        store.delete(Cluster, "c1")
    with pytest.raises(NotFound):
        store.update(cluster("c1"))


def test_apply_all_creates_and_updates(store: Store) -> None:
    store.create(cluster("exists"))
    written = store.apply_all([cluster("new"), cluster("exists", v="3")])
    assert [w.name for w in written] == ["new", "exists"]
    assert store.get(Cluster, "exists").metadata.labels == {"v": "3"}


def test_apply_all_refuses_a_stale_resource_version_and_writes_nothing(store: Store) -> None:
    """kubectl's rule: a resourceVersion in what is applied must be current (issue 14: it
    was ignored, and the last writer silently won)."""
    old = store.create(cluster("c1"))
    current = store.update(old.model_copy(update={"metadata": old.metadata.model_copy(update={"labels": {"v": "2"}})}))  # fmt: skip
    stale = cluster("c1", v="3")
    stale.metadata.resource_version = old.metadata.resource_version
    before = store.revision()
    with pytest.raises(Conflict, match="stale") as info:
        store.apply_all([cluster("new"), stale])
    assert info.value.exit_code == 1
    with pytest.raises(Conflict, match="does not exist"):
        ghost = cluster("ghost")
        ghost.metadata.resource_version = current.metadata.resource_version
        store.apply_all([ghost])
    assert store.revision() == before  # nothing written, not even the valid first object
    assert [c.name for c in store.list(Cluster)] == ["c1"]
    assert store.get(Cluster, "c1").metadata.labels == {"v": "2"}
    fresh = cluster("c1", v="4")
    fresh.metadata.resource_version = current.metadata.resource_version
    (written,) = store.apply_all([fresh])  # the current one: applied
    assert written.metadata.labels == {"v": "4"}


def nodeconfig(name: str, cidr: str, **labels: str) -> NodeConfig:
    route = Route(cidr=cidr, gw="1.1.1.1", dev="vx-bridge")
    return NodeConfig(
        metadata=ObjectMeta(name=name, labels=labels), spec=NodeConfigSpec(routes=[route])
    )


def test_patch_all_creates_sets_specs_and_merges_labels(store: Store) -> None:
    """The network-manager's write: specs set, labels merged, all else kept; what is
    already so writes nothing (no revision, no generation)."""
    kept = store.create(nodeconfig("kept", "10.1.0.0/16", c="a"))
    store.update_status(kept.model_copy(update={"status": kept.status.model_copy(update={"phase": "Synced"})}))  # fmt: skip
    noted = store.get(NodeConfig, "kept")
    noted.metadata.annotations["by"] = "someone"
    noted.metadata.labels["other"] = "x"
    store.update(noted)
    store.create(nodeconfig("same", "10.2.0.0/16", c="b"))
    before = store.revision()
    written = store.patch_all(
        [
            nodeconfig("kept", "10.9.0.0/16", c="a2"),
            nodeconfig("same", "10.2.0.0/16", c="b"),
            nodeconfig("new", "10.3.0.0/16", c="c"),
        ]
    )
    assert written == ["kept", "new"]
    got = store.get(NodeConfig, "kept")
    assert got.spec.routes[0].cidr == "10.9.0.0/16" and got.metadata.generation == 2
    assert got.metadata.labels == {"c": "a2", "other": "x"}
    assert got.metadata.annotations == {"by": "someone"} and got.status.phase == "Synced"
    same = store.get(NodeConfig, "same")
    assert same.metadata.generation == 1 and int(same.metadata.resource_version or 0) <= before
    new = store.get(NodeConfig, "new")
    assert new.metadata.generation == 1 and new.metadata.uid and new.status.phase == ""
    assert store.patch_all([nodeconfig("kept", "10.9.0.0/16", c="a2")]) == []
    labels_only = store.patch_all([nodeconfig("kept", "10.9.0.0/16", extra="1")])
    assert labels_only == ["kept"] and store.get(NodeConfig, "kept").metadata.generation == 2


def test_patch_all_loses_no_write_made_since_the_caller_read(store: Store) -> None:
    """It reads what it patches itself: an object carrying an old resourceVersion (the
    caller's last read) neither conflicts nor undoes the status written since."""
    old = store.create(nodeconfig("n1", "10.1.0.0/16"))
    store.update_status(old.model_copy(update={"status": old.status.model_copy(update={"phase": "Error"})}))  # fmt: skip
    stale = nodeconfig("n1", "10.5.0.0/16")
    stale.metadata.resource_version = old.metadata.resource_version
    assert store.patch_all([stale]) == ["n1"]
    got = store.get(NodeConfig, "n1")
    assert got.status.phase == "Error" and got.spec.routes[0].cidr == "10.5.0.0/16"


def test_watch_replays_exactly_the_missed_events_in_order(store: Store) -> None:
    start = store.revision()
    store.create(cluster("a"))
    b = store.create(cluster("b"))
    store.create(node("a-n", "a"))  # another kind: not in a Cluster watch
    b.metadata.labels["x"] = "y"
    store.update(b)
    store.delete(Cluster, "a")
    events = list(store.watch(Cluster, start, timeout=0.2))
    assert [(e.type, e.object.name) for e in events] == [
        ("ADDED", "a"),
        ("ADDED", "b"),
        ("MODIFIED", "b"),
        ("DELETED", "a"),
    ]
    revs = [e.resource_version for e in events]
    assert revs == sorted(revs)
    # From the middle: only what came after.
    later = list(store.watch(Cluster, revs[1], timeout=0.2))
    assert [(e.type, e.object.name) for e in later] == [("MODIFIED", "b"), ("DELETED", "a")]


def test_watch_delivers_live_events_and_stops(store: Store) -> None:
    stop = threading.Event()
    got: list[str] = []

    since = store.revision()  # before the writes, not racing them from the thread

    def run() -> None:
        for event in store.watch(Cluster, since, stop=stop):
            got.append(event.object.name)
            if len(got) == 2:
                stop.set()

    t = threading.Thread(target=run)
    t.start()
    store.create(cluster("x"))
    store.create(cluster("y"))
    t.join(timeout=10)
    assert not t.is_alive() and got == ["x", "y"]


def test_watch_from_compacted_revision_is_expired(tmp_path: Path) -> None:
    st = SqliteStore(tmp_path / "s.db", keep_changes=5)
    for i in range(1_005):
        st.create(cluster(f"c{i}"))
    with pytest.raises(Expired):
        next(iter(st.watch(Cluster, 1, timeout=0.1)))
    recent = list(st.watch(Cluster, st.revision() - 3, timeout=0.1))
    assert len(recent) == 3
    st.close()


@pytest.mark.slow
def test_concurrent_writers_lose_and_duplicate_nothing(
    store_url: str, store: Store, tmp_path: Path
) -> None:
    """4 writer processes x 500 conflicting updates; a watcher in another process sees each once."""
    writers, per_writer = 4, 500
    store.create(cluster("hot"))
    start = store.revision()
    ctx = multiprocessing.get_context("spawn")
    out = tmp_path / "seen.json"
    watcher = ctx.Process(
        target=workers.watch_counter, args=(store_url, start, writers * per_writer, str(out), 240.0)
    )
    watcher.start()
    with ctx.Pool(writers) as pool:
        conflicts = pool.starmap(workers.bump_counter, [(store_url, "hot", per_writer)] * writers)
    watcher.join(timeout=240)
    assert watcher.exitcode == 0
    assert store.get(Cluster, "hot").metadata.annotations["n"] == str(writers * per_writer)
    seen = json.loads(out.read_text())
    assert [n for _, n in seen] == list(range(1, writers * per_writer + 1))  # none lost, none twice
    assert [r for r, _ in seen] == sorted({r for r, _ in seen})
    assert sum(conflicts) > 0, "the writers never collided: the test proved nothing"


class NodeClock:
    """A node's monotonic clock: its origin is its own (never comparable across nodes)."""

    def __init__(self, origin: float) -> None:
        self.t = origin

    def __call__(self) -> float:
        return self.t


def test_lease_expiry_is_measured_on_each_observers_own_clock(store: Store) -> None:
    wall = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    a_mono, b_mono = NodeClock(100.0), NodeClock(70_000.0)
    a = try_acquire_or_renew(store, "gw", "node-a", 3, wall, monotonic=a_mono)
    assert a.held and a.acquired and a.lease is not None
    assert a.lease.spec.lease_transitions == 0
    # b's wall clock is an hour ahead: renewTime means nothing to it; it first sees the record now.
    b = try_acquire_or_renew(
        store, "gw", "node-b", 3, wall + dt.timedelta(hours=1), monotonic=b_mono
    )
    assert not b.held and b.seen is not None and b.seen.since == 70_000.0
    a_mono.t += 2  # a's wall clock stands still: its renewal must still change the record
    renewed = try_acquire_or_renew(store, "gw", "node-a", 3, wall, seen=a.seen, monotonic=a_mono)
    assert renewed.held and not renewed.acquired
    b_mono.t += 2.5  # 2.5 s after b first saw it, but b sees a new record: its clock restarts
    b = try_acquire_or_renew(store, "gw", "node-b", 3, wall, seen=b.seen, monotonic=b_mono)
    assert not b.held and b.seen is not None and b.seen.since == 70_002.5
    b_mono.t += 2.9
    b = try_acquire_or_renew(store, "gw", "node-b", 3, wall, seen=b.seen, monotonic=b_mono)
    assert not b.held  # unchanged for 2.9 s of b's clock: a 3 s lease holds
    assert b.seen is not None and not b.seen.expired(b_mono.t) and b.seen.expired(b_mono.t + 0.1)
    b_mono.t += 0.1
    took = try_acquire_or_renew(store, "gw", "node-b", 3, wall, seen=b.seen, monotonic=b_mono)
    assert took.held and took.acquired and took.lease is not None
    assert took.lease.spec.holder_identity == "node-b"
    assert took.lease.spec.lease_transitions == 1
    a_mono.t += 10
    late = try_acquire_or_renew(store, "gw", "node-a", 3, wall, seen=renewed.seen, monotonic=a_mono)
    assert not late.held and late.seen is not None and late.seen.holder == "node-b"
    assert release(store, "gw", "node-b")
    back = try_acquire_or_renew(store, "gw", "node-a", 3, wall, seen=late.seen, monotonic=a_mono)
    assert back.held and back.acquired and back.lease is not None  # released: free at once
    assert back.lease.spec.lease_transitions == 2


def test_lease_race_has_exactly_one_winner(store: Store) -> None:
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    try_acquire_or_renew(store, "gw", "old", 1, t0)
    mono = NodeClock(0.0)
    seen = [
        try_acquire_or_renew(store, "gw", f"n{i}", 5, t0, monotonic=mono).seen for i in range(8)
    ]
    mono.t = 10.0  # every contender has seen the same record for 10 s
    results: list[bool] = []
    barrier = threading.Barrier(8)

    def contend(i: int) -> None:
        barrier.wait()
        results.append(
            try_acquire_or_renew(store, "gw", f"n{i}", 5, t0, seen=seen[i], monotonic=mono).held
        )

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 1


def test_watch_by_name_sees_only_that_object(store: Store) -> None:
    start = store.revision()
    store.create(cluster("a"))
    b = store.create(cluster("b"))
    b.metadata.labels["x"] = "1"
    store.update(b)
    store.delete(Cluster, "a")
    events = list(store.watch(Cluster, start, timeout=0.2, name="b"))
    assert [(e.type, e.object.name) for e in events] == [("ADDED", "b"), ("MODIFIED", "b")]
