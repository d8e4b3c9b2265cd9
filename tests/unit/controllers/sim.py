"""Simulated time for control loops: several threads (one per emulated node) take turns on
one virtual timeline, so a 60 s store stall takes milliseconds and every run is the same.

Exactly one actor runs at a time; an actor gives the turn back whenever it waits (its clock's
`wait`, or a write the stalled store blocks). The world then jumps to the earliest wake-up
(ties: the one that asked first) and hands the turn to that actor. After every turn an
observer sees the world - nothing can happen between turns, so what it records is exact.
"""

from __future__ import annotations

import builtins
import datetime as dt
import heapq
import math
import threading
from collections.abc import Callable, Iterator, Sequence

from clusterlink.api.meta import Resource
from clusterlink.store.base import R, ResourceList, Store, StoreError, WatchEvent

EPOCH = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


class Stopped(BaseException):
    """Raised in an actor when the world ends (so loops unwind through their finally)."""


class World:
    def __init__(self) -> None:
        self.now = 0.0
        self._cond = threading.Condition()
        self._queue: list[tuple[float, int, threading.Event]] = []
        self._seq = 0
        self._turn_over = threading.Event()
        self._ended = False
        self._threads: list[threading.Thread] = []

    def sleep_until(self, when: float) -> None:
        """Called by an actor: give the turn back until the world reaches `when`."""
        wake = threading.Event()
        with self._cond:
            if self._ended:
                raise Stopped
            heapq.heappush(self._queue, (max(when, self.now), self._seq, wake))
            self._seq += 1
        self._turn_over.set()
        wake.wait()
        if self._ended:
            raise Stopped

    def spawn(self, body: Callable[[], None]) -> None:
        def actor() -> None:
            try:
                self.sleep_until(self.now)
                body()
            except Stopped:
                pass
            finally:
                self._turn_over.set()

        thread = threading.Thread(target=actor, daemon=True)
        self._turn_over.clear()
        thread.start()
        self._turn_over.wait()  # it has queued its first wake-up
        self._threads.append(thread)

    def run(self, until: float, observe: Callable[[float], None] = lambda _t: None) -> None:
        while True:
            with self._cond:
                if not self._queue or self._queue[0][0] > until:
                    self.now = until
                    return
                when, _, wake = heapq.heappop(self._queue)
                self.now = when
            self._turn_over.clear()
            wake.set()
            self._turn_over.wait()
            observe(self.now)

    def end(self) -> None:
        with self._cond:
            self._ended = True
            waiting = [w for _, _, w in self._queue]
            self._queue.clear()
        for wake in waiting:
            wake.set()
        for thread in self._threads:
            thread.join(10)


class SimClock:
    """One node's `Clock` in a World: its own monotonic origin, its wall clock `skew` off."""

    def __init__(self, world: World, skew: float = 0.0, origin: float = 1000.0) -> None:
        self.world, self.skew, self.origin = world, skew, origin
        self.killed = False  # set: the process is gone (SIGKILL); its next wait never ends

    def monotonic(self) -> float:
        return self.origin + self.world.now

    def now(self) -> dt.datetime:
        return EPOCH + dt.timedelta(seconds=self.world.now + self.skew)

    def wait(self, seconds: float, stop: threading.Event) -> bool:
        if stop.is_set():
            return True
        if self.killed:
            self.world.sleep_until(float("inf"))
        self.world.sleep_until(self.world.now + max(0.0, seconds))
        return stop.is_set()


class StalledStore:
    """A Store whose writes block during `stalls` ([start, end) in world time), as SQLite's
    do while another process holds the write lock: a waiting write tries every `poll`
    seconds (so of two waiters, the one whose try comes first after the stall wins) and
    fails with 'database is locked' after its timeout (default: the busy timeout). Reads go
    through (WAL mode). During `slow_replies` windows a write is done at once but answered
    only at the window's end, or fails after its timeout although done (an API server that
    is slow to answer)."""

    def __init__(
        self,
        inner: Store,
        world: World,
        stalls: Sequence[tuple[float, float]],
        busy_timeout: float = 30.0,
        poll: float = 0.01,
        slow_replies: Sequence[tuple[float, float]] = (),
    ) -> None:
        self.inner, self.world, self.stalls, self.busy_timeout = inner, world, stalls, busy_timeout
        self.poll, self.slow_replies = poll, slow_replies
        self.refused = 0

    def _block(self, timeout: float | None) -> None:
        began = self.world.now
        limit = began + (self.busy_timeout if timeout is None else timeout)
        for start, end in self.stalls:
            if start <= began < end:
                tries = math.ceil((end - began) / self.poll - 1e-9)
                if began + tries * self.poll <= limit:
                    self.world.sleep_until(began + tries * self.poll)
                    return
                self.world.sleep_until(limit)
                self.refused += 1
                raise StoreError("store: cannot write: database is locked")

    def _reply(self, timeout: float | None, began: float) -> None:
        limit = began + (self.busy_timeout if timeout is None else timeout)
        for start, end in self.slow_replies:
            if start <= began < end:
                self.world.sleep_until(min(end, limit))
                if end > limit:
                    raise StoreError("store: no answer in time (the write may have been done)")

    def create(self, obj: R, *, timeout: float | None = None) -> R:
        began = self.world.now
        self._block(timeout)
        done = self.inner.create(obj)
        self._reply(timeout, began)
        return done

    def update(self, obj: R, *, timeout: float | None = None) -> R:
        began = self.world.now
        self._block(timeout)
        done = self.inner.update(obj)
        self._reply(timeout, began)
        return done

    def update_status(self, obj: R) -> R:
        self._block(None)
        return self.inner.update_status(obj)

    def delete(self, cls: type[R], name: str, namespace: str | None = None) -> R:
        self._block(None)
        return self.inner.delete(cls, name, namespace)

    def apply_all(self, objects: Sequence[Resource]) -> builtins.list[Resource]:
        self._block(None)
        return self.inner.apply_all(objects)

    def patch_all(self, objects: Sequence[Resource]) -> builtins.list[str]:
        self._block(None)
        return self.inner.patch_all(objects)

    def get(self, cls: type[R], name: str, namespace: str | None = None) -> R:
        return self.inner.get(cls, name, namespace)

    def list(self, cls: type[R], labels: dict[str, str] | None = None) -> ResourceList[R]:
        return self.inner.list(cls, labels)

    def watch(
        self,
        cls: type[R],
        since: int,
        stop: threading.Event | None = None,
        timeout: float | None = None,
        name: str | None = None,
    ) -> Iterator[WatchEvent[R]]:
        return self.inner.watch(cls, since, stop, timeout, name)

    def revision(self) -> int:
        return self.inner.revision()

    def kind_revision(self, cls: type[Resource]) -> int | None:
        return self.inner.kind_revision(cls)

    def close(self) -> None:
        self.inner.close()
