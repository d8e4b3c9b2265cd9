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
from clusterlink.controllers.clock import Clock, SystemClock
from clusterlink.store.base import Store, StoreError
from clusterlink.store.lease import Observation, release, try_acquire_or_renew

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
            )
        except StoreError as exc:
            if self.seen is not None:
                self.seen = self.seen.restarted(self.clock.monotonic())
            if not self._failing:
                log.warning("lease %s: %s: %s", self.name, self.identity, exc)
            self._failing = True
            self._report(was_leader)
            return self.is_leader
        self._failing = False
        self.seen = result.seen
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
