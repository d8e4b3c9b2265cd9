"""What only the sqlite backend promises: atomic apply_all, clear errors on a bad path, watchers
woken by writes of their own kind only."""

from __future__ import annotations

import os
import select
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from clusterlink.api import Cluster, NodeConfig, NodeConfigSpec, ObjectMeta, Route
from clusterlink.api.lease import Lease, LeaseSpec
from clusterlink.api.nodeconfig import NodeConfigStatus
from clusterlink.store import sqlite as sqlite_store
from clusterlink.store.base import NotFound, StoreError
from clusterlink.store.doorbell import Doorbell
from clusterlink.store.sqlite import SqliteStore
from clusterlink.store.url import open_store


def test_apply_all_rolls_back_on_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    st = SqliteStore(tmp_path / "s.db")
    st.create(Cluster(metadata=ObjectMeta(name="keep")))
    rev = st.revision()
    real_create = SqliteStore._create

    def failing_create(self: SqliteStore, db: object, obj: Cluster) -> Cluster:
        if obj.name == "boom":
            raise StoreError("disk on fire")
        return real_create(self, db, obj)

    monkeypatch.setattr(SqliteStore, "_create", failing_create)
    with pytest.raises(StoreError, match="disk on fire"):
        st.apply_all(
            [Cluster(metadata=ObjectMeta(name="first")), Cluster(metadata=ObjectMeta(name="boom"))]
        )
    assert st.revision() == rev
    with pytest.raises(NotFound):
        st.get(Cluster, "first")


@pytest.mark.parametrize(
    "url, needle",
    [
        ("sqlite:///proc/nope/x.db", "directory /proc/nope does not exist"),
        ("sqlite:///etc/hostname/x.db", "is not a directory"),
        ("postgres://x", "unknown scheme"),
        ("just-a-path", "expected SCHEME://"),
        ("sqlite://", "no file path"),
    ],
)
def test_bad_store_urls(url: str, needle: str) -> None:
    with pytest.raises(StoreError, match=needle):
        open_store(url)


def test_directory_is_not_a_store(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="is a directory"):
        open_store(f"sqlite://{tmp_path}")


def test_env_var_selects_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLUSTERLINK_STORE", f"sqlite://{tmp_path}/env.db")
    st = open_store(None)
    st.create(Cluster(metadata=ObjectMeta(name="c")))
    assert (tmp_path / "env.db").exists()
    st.close()


def test_a_write_with_a_timeout_gives_up_on_a_locked_store(tmp_path: Path) -> None:
    """Another process holds the write lock (a stalled store): a bounded write fails after
    its timeout with nothing written, instead of waiting out SQLite's 30 s busy timeout."""
    store = SqliteStore(tmp_path / "s.db")
    first = store.create(Cluster(metadata=ObjectMeta(name="c1")))
    other = sqlite3.connect(tmp_path / "s.db", isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    changed = first.model_copy(deep=True)
    changed.metadata.labels["x"] = "1"
    with pytest.raises(StoreError, match="locked"):
        store.update(changed, timeout=0.2)
    with pytest.raises(StoreError, match="locked"):
        store.create(Cluster(metadata=ObjectMeta(name="c2")), timeout=0.0)
    other.execute("ROLLBACK")
    assert store.get(Cluster, "c1") == first
    assert store.update(changed, timeout=0.0).metadata.labels == {"x": "1"}
    other.close()


def _lease(name: str, holder: str) -> Lease:
    return Lease(
        metadata=ObjectMeta(name=name, namespace="default"),
        spec=LeaseSpec(holder_identity=holder, lease_duration_seconds=2),
    )


def test_a_write_wakes_only_the_watchers_of_its_kind_and_key(tmp_path: Path) -> None:
    """Lease renewals (most of a lab's writes) must not wake every Cluster watcher of every
    process, nor a write of one object the watchers of another."""
    watcher, writer = SqliteStore(tmp_path / "s.db"), SqliteStore(tmp_path / "s.db")
    every = Doorbell.make(watcher._doorbell_dir("Cluster", None))
    just_c = Doorbell.make(watcher._doorbell_dir("Cluster", "c"))
    assert every is not None and just_c is not None

    def rung(bell: Doorbell, timeout: float) -> bool:
        return bool(select.select([bell.fd], [], [], timeout)[0])

    lease = writer.create(_lease("l", "a"))
    for i in range(5):
        lease = writer.update(lease.model_copy(update={"spec": _lease("l", f"b{i}").spec}))
    assert not rung(every, 0.3), "a Lease write rang a Cluster watcher"
    writer.create(Cluster(metadata=ObjectMeta(name="d")))
    assert rung(every, 5.0), "a Cluster write did not ring"
    assert not rung(just_c, 0.3), "a write of d rang the watcher of c"
    every.wait(0)
    assert not rung(every, 0), "wait() consumes the rings"
    writer.create(Cluster(metadata=ObjectMeta(name="c")))
    assert rung(just_c, 5.0) and rung(every, 5.0)
    # A watcher that died without closing: its doorbell has no reader, the next ring removes it.
    os.close(just_c.fd)
    writer.delete(Cluster, "c")
    assert not just_c.path.exists() and every.path.exists()
    every.close()
    assert not every.path.exists()
    # The kinds table (kept by a trigger, so also for writers that do not know it).
    rows = dict(watcher._db.execute("SELECT kind, rv FROM kinds").fetchall())
    assert rows == {"Lease": 6, "Cluster": 9}
    watcher.close()
    writer.close()


def _first_event_after(
    tmp_path: Path, write: object, monkeypatch: pytest.MonkeyPatch, safety_net: float
) -> float:
    """Seconds from `write()` (on a second connection) until a Cluster watcher yields it."""
    monkeypatch.setattr(sqlite_store, "SAFETY_NET", safety_net)
    watcher, writer = SqliteStore(tmp_path / "s.db"), SqliteStore(tmp_path / "s.db")
    since, stop, got = watcher.revision(), threading.Event(), threading.Event()
    seen: list[str] = []

    def run() -> None:
        for event in watcher.watch(Cluster, since, stop=stop, timeout=20):
            seen.append(event.object.name)
            got.set()
            return

    t = threading.Thread(target=run)
    t.start()
    time.sleep(0.3)  # the watcher is asleep now
    for i in range(3):  # other kinds' writes wake nothing and are no events
        writer.create(_lease(f"l{i}", "x"))
    start = time.monotonic()
    write(writer)  # type: ignore[operator]
    assert got.wait(20)
    took = time.monotonic() - start
    stop.set()
    t.join(5)
    assert seen == ["c"]
    watcher.close()
    writer.close()
    return took


def test_a_watcher_wakes_on_its_kind_at_once_not_on_the_safety_net(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    took = _first_event_after(
        tmp_path,
        lambda w: w.create(Cluster(metadata=ObjectMeta(name="c"))),
        monkeypatch,
        safety_net=30.0,
    )
    assert took < 5.0


def test_the_safety_net_finds_a_commit_whose_wake_up_was_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer that died between commit and touch (or one that never touches: an older
    version): the watcher still sees the change within its safety net."""

    def silent_write(w: SqliteStore) -> None:
        w._notify = lambda kinds: None  # type: ignore[method-assign]
        w.create(Cluster(metadata=ObjectMeta(name="c")))

    took = _first_event_after(tmp_path, silent_write, monkeypatch, safety_net=0.5)
    assert took < 5.0


class WrittenMeanwhile(SqliteStore):
    """A store where, after patch_all read what it patches and before its transaction,
    another process writes the status of NodeConfig `n1` (an agent reporting)."""

    other: SqliteStore | None = None

    def _patched(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        if self.other is not None:
            other, self.other = self.other, None
            nc = other.get(NodeConfig, "n1")
            other.update_status(nc.model_copy(update={"status": NodeConfigStatus(phase="Synced")}))
        return super()._patched(*args, **kwargs)


def test_patch_all_works_out_again_what_was_written_since_its_read(tmp_path: Path) -> None:
    """The new forms are worked out before the transaction (the lock is held ~1 ms per
    large object less); one written meanwhile is worked out again inside, and the write
    made meanwhile is kept."""
    store = WrittenMeanwhile(tmp_path / "s.db")
    route = Route(cidr="10.1.0.0/16", gw="1.1.1.1", dev="vx-bridge")
    store.create(NodeConfig(metadata=ObjectMeta(name="n1"), spec=NodeConfigSpec()))
    store.create(NodeConfig(metadata=ObjectMeta(name="n2"), spec=NodeConfigSpec()))
    store.other = SqliteStore(tmp_path / "s.db")
    wanted = NodeConfigSpec(routes=[route])
    assert store.patch_all(
        [
            NodeConfig(metadata=ObjectMeta(name=n, labels={"c": "x"}), spec=wanted)
            for n in ("n1", "n2")
        ]
    ) == ["n1", "n2"]
    assert store.other is None  # the write meanwhile happened
    for name in ("n1", "n2"):
        got = store.get(NodeConfig, name)
        assert got.spec == wanted and got.metadata.labels == {"c": "x"}
        assert got.metadata.generation == 2
        assert int(got.metadata.resource_version or 0) == store.revision() - (name == "n1")
    assert store.get(NodeConfig, "n1").status.phase == "Synced"
