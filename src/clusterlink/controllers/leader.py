"""Leadership through a Lease, as client-go's leaderelection does it.

Timings (`LeaseTiming`), each measured on this node's monotonic clock only:
- `duration`: an observer may take the lease once the record has not changed for this long
  since it first saw it (`store/lease.py`);
- `renew_deadline`: a holder leads until `renew_deadline` after it *started* its last
  successful write. Since the write started before anyone could see it, every observer's
  expiry comes at least `duration - renew_deadline` later: never two leaders, whatever the
  wall clocks say and however long a write blocked. The holder stops leading on time even
  while a write is still blocked (`is_leader` reads the clock, not a flag);
- `retry`: seconds between attempts. A holder renews once a third of `duration` passed.

A write that fails because the store is busy or unreachable restarts our observation of the
record (the holder could not write either), so after a store stall the holder, which keeps
waiting on the store, renews before any challenger deems the lease expired; a challenger waits
only `ACQUIRE_WAIT` for a busy store, the holder up to `renew_deadline`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from clusterlink import constants as C
from clusterlink.api.lease import Lease
from clusterlink.controllers.clock import Clock, SystemClock
from clusterlink.store.base import Expired, Store, StoreError
from clusterlink.store.lease import Observation, observe, release, try_acquire_or_renew
from clusterlink.store.stop import Stop, woken_by

log = logging.getLogger("clusterlink.leader")

# How long a challenger's takeover waits for a busy store: longer than an ordinary write holds
# SQLite's lock (milliseconds), short against a lease, so it is rarely waiting when a stall ends.
ACQUIRE_WAIT = 0.02


@dataclass(frozen=True)
class LeaseTiming:
    duration: float = 15.0  # seconds a lease stays valid after a renewal
    renew_deadline: float = 10.0  # a holder that could not renew for this long stops leading
    retry: float = 2.0  # seconds between attempts

    def check(self) -> None:
        if not (self.retry < self.renew_deadline < self.duration):
            raise ValueError(
                f"need retry < renew deadline < duration (got {self.retry}, "
                f"{self.renew_deadline}, {self.duration})"
            )


class Leadership:
    """Try, renew, lose; `is_leader` is safe to read from other threads."""

    def __init__(
        self,
        store: Store,
        name: str,
        identity: str,
        timing: LeaseTiming,
        namespace: str = C.DEFAULT_NAMESPACE,
        clock: Clock | None = None,
    ) -> None:
        timing.check()
        self.store, self.name, self.identity, self.timing = store, name, identity, timing
        self.namespace = namespace
        self.clock: Clock = clock or SystemClock()
        self.seen: Observation | None = None
        self.leading_until = float("-inf")  # monotonic; start of the last renewal + deadline
        self._renewed_at = float("-inf")
        self._failing = False
        self.reached_store = False  # the last try got an answer from the store (readiness)
        self._written: Lease | None = None  # the record our last renewal wrote

    @property
    def is_leader(self) -> bool:
        return self.clock.monotonic() < self.leading_until

    def attempt(self) -> bool:
        """One try; returns whether we lead now."""
        start = self.clock.monotonic()
        if self.is_leader and start - self._renewed_at < self.timing.duration / 3:
            return True
        was_leader = self.is_leader
        try:
            result = try_acquire_or_renew(
                self.store,
                self.name,
                self.identity,
                max(1, round(self.timing.duration)),
                self.clock.now(),
                self.namespace,
                seen=self.seen,
                monotonic=self.clock.monotonic,
                renew_wait=self.timing.renew_deadline,
                acquire_wait=ACQUIRE_WAIT,
                known=self._written if was_leader else None,
            )
        except StoreError as exc:
            self.reached_store = False
            if self.seen is not None:
                self.seen = self.seen.restarted(self.clock.monotonic())
            if not self._failing:
                log.warning("lease %s: %s: %s", self.name, self.identity, exc)
            self._failing = True
            self._report(was_leader)
            return self.is_leader
        self._failing = False
        self.reached_store = True
        self.seen = result.seen
        self._written = result.lease if result.held else None
        if result.held:
            self._renewed_at = start
            self.leading_until = start + self.timing.renew_deadline
            if not self.is_leader:
                log.warning(
                    "lease %s: %s renewed %.2f s after trying, past its deadline; trying again",
                    self.name,
                    self.identity,
                    self.clock.monotonic() - start,
                )
        else:
            self.leading_until = float("-inf")  # someone else holds it, or won the race
        self._report(was_leader)
        return self.is_leader

    def _report(self, was_leader: bool) -> None:
        if self.is_leader and not was_leader:
            log.info("lease %s: %s leads", self.name, self.identity)
        elif was_leader and not self.is_leader:
            log.warning("lease %s: %s stopped leading", self.name, self.identity)

    def pause(self, began: float) -> float:
        """Seconds to wait before the next attempt of one that began at `began`: none when a
        write blocked us for a retry period already (the store may just be back)."""
        return max(0.0, self.timing.retry - (self.clock.monotonic() - began))

    def expiry(self) -> float | None:
        """When the lease is free by our observation of it (our monotonic clock; None when
        we have none: we have not read it, or hold it)."""
        seen = self.seen
        if seen is None or seen.holder == self.identity:
            return None
        duration = seen.spec.lease_duration_seconds
        return seen.since if seen.holder is None or not duration else seen.since + duration

    def follow(self, record: Lease | None, at: float) -> None:
        """A change of the record that a watch delivered `at` (our monotonic clock, after the
        write committed, so an observation from it is never early): as good as a read.
        `None`: the record was deleted."""
        self.seen = None if record is None else observe(self.seen, record, at)

    def give_up(self) -> None:
        if self.is_leader:
            try:
                release(
                    self.store, self.name, self.identity, self.namespace, self.timing.renew_deadline
                )
            except StoreError as exc:
                log.warning("lease %s: cannot release: %s", self.name, exc)
        self.leading_until = float("-inf")

    def run(self, stop: threading.Event, while_leading: Callable[[], None] | None = None) -> None:
        """Attempt every `retry` seconds until stopped; call `while_leading` after each
        attempt that leaves us leader. Releases the lease on the way out."""
        try:
            while not stop.is_set():
                began = self.clock.monotonic()
                if self.attempt() and while_leading is not None:
                    while_leading()
                if self.clock.wait(self.pause(began), stop):
                    break
        finally:
            self.give_up()


class LeaseFollower:
    """The changes of one Lease as they land, from a store watch in a thread of its own, so
    a candidate that does not hold the lease sleeps until it expires by its observation or
    changes hands, instead of reading it every retry period. Only the latest change is kept:
    an observation needs no other. `pause` (while we hold the lease: our own renewals are
    no news) ends the watch; `resume` starts one again and says changes were lost."""

    def __init__(
        self, store: Store, name: str, stop: threading.Event, clock: Clock | None = None
    ) -> None:
        self.store, self.name, self.stop = store, name, stop
        self.clock: Clock = clock or SystemClock()
        self._changed = threading.Condition()  # an RLock: `interrupt` is signal-handler safe
        self._latest: tuple[Lease | None, float] | None = None
        self._lost = False
        self._active = threading.Event()
        self._session = Stop()  # set to end the current watch (pause, stop)

    def start(self) -> None:
        """Follow from now (before the caller's first read of the record: nothing missed)."""
        self._active.set()
        since = self.store.revision()
        threading.Thread(target=self._run, args=(since,), daemon=True, name="lease-watch").start()

    def pause(self) -> None:
        if self._active.is_set():
            self._active.clear()
            self._session.set()

    def resume(self) -> None:
        if not self._active.is_set():
            with self._changed:
                self._lost = True  # what changed while paused: the caller reads the record
            self._active.set()

    def _run(self, since: int | None) -> None:
        while not self.stop.is_set():
            if not self._active.is_set():
                self._active.wait(1.0)
                continue
            session = self._session = Stop()
            if not self._active.is_set():
                continue  # paused between the check and the new session
            try:
                if since is None:
                    since = self.store.revision()
                with woken_by(self.stop, session.set):
                    for event in self.store.watch(Lease, since, stop=session, name=self.name):
                        since = event.resource_version
                        record = None if event.type == "DELETED" else event.object
                        with self._changed:
                            self._latest = (record, self.clock.monotonic())
                            self._changed.notify_all()
                since = None  # paused or stopped: the next watch starts from its own now
            except Expired:
                since = None
                with self._changed:
                    self._lost = True
                    self._changed.notify_all()
            except StoreError as exc:
                log.warning("lease %s: watch: %s", self.name, exc)
                self.stop.wait(1.0)

    def interrupt(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def wait(self, timeout: float) -> tuple[tuple[Lease | None, float] | None, bool]:
        """(the latest change since the last call, as (record or None if deleted, when it
        arrived on our monotonic clock); whether changes were lost, so the record must be
        read), waiting up to `timeout` seconds for one."""
        with self._changed:
            if self._latest is None and not self._lost and timeout > 0:
                self._changed.wait(timeout)
            latest, lost = self._latest, self._lost
            self._latest, self._lost = None, False
            return latest, lost
