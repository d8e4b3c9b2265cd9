"""Leadership through a Lease (client-go's leader election, small): a holder keeps renewing
every `retry` seconds and counts as leader while its last renewal is younger than
`renew_deadline`; anyone may take the lease once it is `duration` seconds old."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from clusterlink import constants as C
from clusterlink.store.base import Store, StoreError
from clusterlink.store.lease import release, try_acquire_or_renew

log = logging.getLogger("clusterlink.leader")


@dataclass(frozen=True)
class LeaseTiming:
    duration: float = 15.0  # seconds a lease stays valid after a renewal
    renew_deadline: float = 10.0  # a holder that could not renew for this long stops leading
    retry: float = 2.0  # seconds between attempts

    def check(self) -> None:
        if not (self.retry < self.renew_deadline <= self.duration):
            raise ValueError(
                f"need retry < renew deadline <= duration (got {self.retry}, "
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
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        timing.check()
        self.store, self.name, self.identity, self.timing = store, name, identity, timing
        self.namespace, self.clock, self.monotonic = namespace, clock, monotonic
        self.is_leader = False
        self.reached_store = False  # the last try got an answer from the store (readiness)
        self._last_renew = 0.0

    def attempt(self) -> bool:
        """One try; returns whether we lead now. A leader renews once a third of the lease
        has passed (client-go renews every retry; this spares the store most writes)."""
        if self.is_leader and self.monotonic() - self._last_renew < self.timing.duration / 3:
            return True
        other_holder = False
        try:
            result = try_acquire_or_renew(
                self.store,
                self.name,
                self.identity,
                max(1, round(self.timing.duration)),
                self.clock(),
                self.namespace,
            )
            held = result.held
            self.reached_store = True
            if not held and result.lease is not None:
                holder = result.lease.spec.holder_identity
                other_holder = holder is not None and holder != self.identity
        except StoreError as exc:
            log.warning("lease %s: %s", self.name, exc)
            held = False
            self.reached_store = False
        now = self.monotonic()
        if held:
            if not self.is_leader:
                log.info("lease %s: %s leads", self.name, self.identity)
            self._last_renew = now
            self.is_leader = True
        elif self.is_leader and (
            other_holder or now - self._last_renew >= self.timing.renew_deadline
        ):
            log.warning("lease %s: %s lost the lease; stepping down", self.name, self.identity)
            self.is_leader = False
        return self.is_leader

    def give_up(self) -> None:
        if self.is_leader:
            try:
                release(self.store, self.name, self.identity, self.namespace)
            except StoreError as exc:
                log.warning("lease %s: cannot release: %s", self.name, exc)
        self.is_leader = False

    def run(self, stop: threading.Event, while_leading: Callable[[], None] | None = None) -> None:
        """Attempt every `retry` seconds until stopped; call `while_leading` after each
        attempt that leaves us leader. Releases the lease on the way out."""
        try:
            while not stop.is_set():
                if self.attempt() and while_leading is not None:
                    while_leading()
                stop.wait(self.timing.retry)
        finally:
            self.give_up()
