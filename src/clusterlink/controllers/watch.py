"""Waking a reconcile loop when objects of some kinds change (events only make a pass sooner)."""

from __future__ import annotations

import logging
import threading

from clusterlink.api.meta import Resource
from clusterlink.store.base import Expired, Store, StoreError

log = logging.getLogger("clusterlink.watch")


class Waker:
    def __init__(
        self, store: Store, kinds: tuple[type[Resource], ...], stop: threading.Event
    ) -> None:
        self.store, self.kinds, self.stop = store, kinds, stop
        self.event = threading.Event()
        self.event.set()  # a first pass at start

    def start(self) -> None:
        for kind in self.kinds:
            threading.Thread(
                target=self._watch, args=(kind,), daemon=True, name=f"watch-{kind.KIND}"
            ).start()

    def _watch(self, kind: type[Resource]) -> None:
        since = self.store.revision()
        while not self.stop.is_set():
            try:
                for event in self.store.watch(kind, since, stop=self.stop):
                    since = event.resource_version
                    self.event.set()
                return
            except Expired:
                since = self.store.revision()
                self.event.set()
            except StoreError as exc:
                log.warning("watch %s: %s", kind.KIND, exc)
                self.stop.wait(1.0)

    def poke(self) -> None:
        self.event.set()

    def wait(self, timeout: float) -> bool:
        """True when something changed (or a poke) - and clears it."""
        woke = self.event.wait(timeout)
        self.event.clear()
        return woke
