"""What a deployed elector does between tries, on real time and a real SQLite store: a holder
renews on the record it wrote last (no read first, unless someone else changed it); a
candidate that does not lead follows the Lease's watch (`LeaseFollower`) instead of reading
it every retry period, and still takes over at once on a release and after a lease duration
of silence from a holder that died."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from clusterlink.api import Lease
from clusterlink.api.lease import LeaseSpec
from clusterlink.api.meta import ObjectMeta, now_rfc3339
from clusterlink.controllers.elector import Elector, lease_name
from clusterlink.controllers.leader import Leadership, LeaseFollower, LeaseTiming
from clusterlink.store.sqlite import SqliteStore
from clusterlink.store.stop import Stop
from tests.unit.planner.federation import cluster, node

FAST = LeaseTiming(duration=1.0, renew_deadline=0.75, retry=0.1)
NS = "kosmos-system"


class Reads(SqliteStore):
    """A store (one process's connection) that counts its reads of single objects."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.gets = 0

    def get(self, cls: Any, name: str, namespace: str | None = None) -> Any:
        self.gets += 1
        return super().get(cls, name, namespace)


class Manual:
    """A clock moved by hand."""

    def __init__(self) -> None:
        self.t = 100.0

    def monotonic(self) -> float:
        return self.t

    def now(self) -> dt.datetime:
        return dt.datetime(2026, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=self.t)

    def wait(self, seconds: float, stop: threading.Event) -> bool:
        return stop.is_set()


def test_a_holder_renews_without_reading_unless_the_record_changed(tmp_path: Path) -> None:
    store, clock = Reads(tmp_path / "s.db"), Manual()
    lead = Leadership(store, "l", "me", LeaseTiming(3.0, 2.0, 0.5), namespace=NS, clock=clock)
    assert lead.attempt()
    for _ in range(3):
        clock.t += 1.5  # past a third of the duration: a renewal
        reads, version = store.gets, store.get(Lease, "l", NS).metadata.resource_version
        store.gets = reads
        assert lead.attempt()
        assert store.gets == reads, "a renewal read the record first"
        assert store.get(Lease, "l", NS).metadata.resource_version != version
        store.gets = reads
    other = SqliteStore(tmp_path / "s.db")  # someone edits the record: the CAS fails, we read
    lease = other.get(Lease, "l", NS)
    other.update(lease.model_copy(update={"metadata": lease.metadata.model_copy(
        update={"annotations": {"who": "someone"}})}))  # fmt: skip
    clock.t += 1.5
    reads = store.gets
    assert lead.attempt()
    assert store.gets == reads + 1
    renewed = store.get(Lease, "l", NS)
    assert renewed.spec.holder_identity == "me"
    assert renewed.metadata.annotations == {"who": "someone"}


@pytest.fixture
def electors(tmp_path: Path) -> Iterator[Callable[[str], tuple[Elector, Reads, Stop]]]:
    seed = SqliteStore(tmp_path / "s.db")
    seed.create(cluster("b", "gateway"))
    for i, name in enumerate(("g", "i", "j"), start=1):
        seed.create(node("b", name, f"192.168.2.{i}"))
    running: list[tuple[threading.Thread, Stop]] = []

    def start(name: str) -> tuple[Elector, Reads, Stop]:
        store = Reads(tmp_path / "s.db")
        elector = Elector(store, "b", name, timing=FAST, follow=True)
        stop = Stop()
        thread = threading.Thread(target=elector.run, args=(stop,), daemon=True)
        thread.start()
        running.append((thread, stop))
        return elector, store, stop

    yield start
    for _, stop in running:
        stop.set()
    for thread, _ in running:
        thread.join(timeout=5)
        assert not thread.is_alive()


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> float:
    began = time.monotonic()
    while not check():
        if time.monotonic() - began > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)
    return time.monotonic() - began


def test_a_follower_reads_nothing_while_the_holder_renews_and_takes_over_on_release(
    electors: Callable[[str], tuple[Elector, Reads, Stop]],
) -> None:
    holder, _, holder_stop = electors("g")
    wait_for(lambda: holder.leadership.is_leader, 5, "g to lead")
    follower, reads, _ = electors("i")
    time.sleep(0.3)  # its first tries
    before = reads.gets
    time.sleep(2.0)  # 20 retry periods, 3 holder renewals
    assert holder.leadership.is_leader and not follower.leadership.is_leader
    assert reads.gets - before <= 1, f"{reads.gets - before} reads in 2 s (polling: ~20)"
    holder_stop.set()  # gives the lease up on its way out
    took = wait_for(lambda: follower.leadership.is_leader, 3, "i to take over")
    assert took < 0.5, f"took over {took:.2f} s after the release"


def test_a_follower_takes_a_silent_holders_lease_after_its_duration(
    tmp_path: Path, electors: Callable[[str], tuple[Elector, Reads, Stop]]
) -> None:
    ghost = LeaseSpec(holder_identity="b-ghost", lease_duration_seconds=1,
                      acquire_time=now_rfc3339(), renew_time=now_rfc3339())  # fmt: skip
    SqliteStore(tmp_path / "s.db").create(
        Lease(metadata=ObjectMeta(name=lease_name("b"), namespace=NS), spec=ghost)
    )
    follower, _, _ = electors("j")
    took = wait_for(lambda: follower.leadership.is_leader, 5, "j to take the ghost's lease")
    assert 0.9 <= took < 2.0, f"took the lease {took:.2f} s after first seeing it"


def test_a_paused_follower_delivers_nothing_and_says_changes_were_lost_on_resume(
    tmp_path: Path,
) -> None:
    """A leader pauses its follower (its own renewals are no news): the watch ends, a write
    meanwhile is not delivered, and resuming says "read the record" instead."""
    store, stop = SqliteStore(tmp_path / "s.db"), Stop()
    follower = LeaseFollower(store, "l", stop)
    follower.start()
    try:
        spec = LeaseSpec(holder_identity="a", lease_duration_seconds=1)
        created = store.create(Lease(metadata=ObjectMeta(name="l", namespace=NS), spec=spec))
        latest, lost = follower.wait(2.0)
        assert latest is not None and latest[0] is not None and not lost
        assert latest[0].metadata.resource_version == created.metadata.resource_version
        follower.pause()
        time.sleep(0.2)  # the watch ends
        store.update(created.model_copy(update={"spec": spec.model_copy(
            update={"holder_identity": "b"})}))  # fmt: skip
        assert follower.wait(0.5) == (None, False), "a paused follower delivered a change"
        follower.resume()
        assert follower.wait(0.5) == (None, True)  # a write before its new watch: read it
        time.sleep(0.3)  # the new watch begins
        store.delete(Lease, "l", NS)
        latest, lost = follower.wait(2.0)
        assert latest is not None and latest[0] is None, "the deletion after resume was missed"
    finally:
        stop.set()
