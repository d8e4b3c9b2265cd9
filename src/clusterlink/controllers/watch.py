"""A watch-fed cache of whole kinds, for loops that would otherwise list everything; it also
wakes the loop when objects change (events only make a pass sooner)."""

from __future__ import annotations

import logging
import threading

from clusterlink.api.meta import Resource
from clusterlink.store.base import Expired, R, Store, StoreError

log = logging.getLogger("clusterlink.watch")


class Informer:
    """A watch-fed cache of whole kinds (client-go's informer, reduced): each kind is listed
    once, then kept current from its watch (and listed again only when the watch expired).
    A loop reads `list` from memory and `wait`s for a change; events only make it sooner."""

    def __init__(
        self, store: Store, kinds: tuple[type[Resource], ...], stop: threading.Event
    ) -> None:
        self.store, self.kinds, self.stop = store, kinds, stop
        self.event = threading.Event()
        self._lock = threading.Lock()
        self._objects: dict[str, dict[str, Resource]] = {k.KIND: {} for k in kinds}
        self._synced = {k.KIND: threading.Event() for k in kinds}

    def start(self) -> None:
        for kind in self.kinds:
            threading.Thread(
                target=self._feed, args=(kind,), daemon=True, name=f"informer-{kind.KIND}"
            ).start()

    def _relist(self, kind: type[Resource]) -> int:
        listed = self.store.list(kind)
        with self._lock:
            self._objects[kind.KIND] = {o.key: o for o in listed}
        self._synced[kind.KIND].set()
        self.event.set()
        return listed.resource_version

    def _feed(self, kind: type[Resource]) -> None:
        since: int | None = None
        while not self.stop.is_set():
            try:
                if since is None:
                    since = self._relist(kind)
                for event in self.store.watch(kind, since, stop=self.stop):
                    since = event.resource_version
                    with self._lock:
                        objects = self._objects[kind.KIND]
                        if event.type == "DELETED":
                            objects.pop(event.object.key, None)
                        else:
                            objects[event.object.key] = event.object
                    self.event.set()
                return
            except Expired:
                since = None  # list again, watch from there
            except StoreError as exc:
                log.warning("informer %s: %s", kind.KIND, exc)
                since = None
                self.stop.wait(1.0)

    def synced(self, timeout: float) -> bool:
        """True once every kind has been listed (within `timeout` seconds)."""
        return all(e.wait(timeout) for e in self._synced.values())

    def list(self, cls: type[R]) -> list[R]:
        """The cached objects of a kind, sorted by key (as `Store.list` returns them)."""
        with self._lock:
            objects = list(self._objects[cls.KIND].values())
        return sorted((o for o in objects if isinstance(o, cls)), key=lambda o: o.key)

    def poke(self) -> None:
        self.event.set()

    def wait(self, timeout: float) -> bool:
        """True when something changed (or a poke) - and clears it."""
        woke = self.event.wait(timeout)
        self.event.clear()
        return woke
