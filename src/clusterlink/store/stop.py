"""`Stop`: a stop flag that wakes the waits it knows about when it is set.

A `threading.Event` is enough to ask a loop to stop, but a loop asleep on something else (a
watch on its doorbell, a select on netlink sockets) sees it only when that sleep ends. So the
sleeps are long only where the stop can cut them short: a waiter registers a wake-up (`hook`)
for as long as it sleeps, and `set` calls every one. Signal-handler safe: `set` takes no lock
of its own, and a hook must be safe there too (one write to a doorbell or pipe, or a notify
under a reentrant lock: the handler runs in the main thread, which may hold it).
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Callable, Iterator


class Stop(threading.Event):
    """A `threading.Event` whose `set` also calls the wake-ups hooked to it."""

    def __init__(self) -> None:
        super().__init__()
        self._hooks: dict[int, Callable[[], None]] = {}
        self._keys = itertools.count()  # next() on a count is atomic

    def set(self) -> None:
        super().set()
        for hook in list(self._hooks.values()):
            hook()

    @contextlib.contextmanager
    def hook(self, wake: Callable[[], None]) -> Iterator[None]:
        """Call `wake` if the stop is set while the block runs (at once if it already is)."""
        key = next(self._keys)
        self._hooks[key] = wake
        try:
            if self.is_set():
                wake()
            yield
        finally:
            self._hooks.pop(key, None)


@contextlib.contextmanager
def woken_by(stop: threading.Event | None, wake: Callable[[], None] | None) -> Iterator[None]:
    """`stop.hook(wake)` when `stop` is a `Stop`; nothing for a plain Event, no stop or no
    wake-up: those waiters see the stop on their own timers."""
    if isinstance(stop, Stop) and wake is not None:
        with stop.hook(wake):
            yield
    else:
        yield
