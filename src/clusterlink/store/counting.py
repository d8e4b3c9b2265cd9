"""Counting store requests, for measurement only: `CLUSTERLINK_STORE_COUNT=DIR` makes
`open_store` wrap its store so that each process writes its calls per method and kind to
`DIR/<pid>.json` (at most once a second, and at exit). A watch counts once when it starts (on
Kubernetes one long request) and its events count apart."""

from __future__ import annotations

import atexit
import builtins
import json
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from clusterlink.api.meta import Resource
from clusterlink.store.base import R, ResourceList, Store, WatchEvent

ENV_COUNT = "CLUSTERLINK_STORE_COUNT"


class CountingStore:
    """A `Store` that forwards every call and counts it."""

    def __init__(self, inner: Store, directory: Path) -> None:
        self.inner = inner
        self.path = directory / f"{os.getpid()}.json"
        self.counts: Counter[str] = Counter()
        self.started = time.time()
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()  # one writer of the file at a time
        self._flushed = 0.0
        directory.mkdir(parents=True, exist_ok=True)
        atexit.register(self.flush)

    def _count(self, method: str, kind: str) -> None:
        with self._lock:
            self.counts[f"{method} {kind}"] += 1
            due = time.monotonic() - self._flushed > 1.0
        if due:
            self.flush()

    def flush(self) -> None:
        """Write the counts so far; never fails the store call that triggered it."""
        with self._write_lock:
            with self._lock:
                self._flushed = time.monotonic()
                data: dict[str, Any] = {
                    "argv": sys.argv,
                    "started": self.started,
                    "written": time.time(),
                    "counts": dict(self.counts),
                }
            tmp = self.path.with_suffix(".tmp")
            try:
                tmp.write_text(json.dumps(data))
                tmp.replace(self.path)
            except OSError:
                pass

    def create(self, obj: R, *, timeout: float | None = None) -> R:
        self._count("create", obj.KIND)
        return self.inner.create(obj, timeout=timeout)

    def get(self, cls: type[R], name: str, namespace: str | None = None) -> R:
        self._count("get", cls.KIND)
        return self.inner.get(cls, name, namespace)

    def list(self, cls: type[R], labels: dict[str, str] | None = None) -> ResourceList[R]:
        self._count("list", cls.KIND)
        return self.inner.list(cls, labels)

    def update(self, obj: R, *, timeout: float | None = None) -> R:
        self._count("update", obj.KIND)
        return self.inner.update(obj, timeout=timeout)

    def update_status(self, obj: R) -> R:
        self._count("update_status", obj.KIND)
        return self.inner.update_status(obj)

    def delete(self, cls: type[R], name: str, namespace: str | None = None) -> R:
        self._count("delete", cls.KIND)
        return self.inner.delete(cls, name, namespace)

    def apply_all(self, objects: Sequence[Resource]) -> builtins.list[Resource]:
        self._count("apply_all", "*")
        return self.inner.apply_all(objects)

    def patch_all(self, objects: Sequence[Resource]) -> builtins.list[str]:
        self._count("patch_all", "*")
        return self.inner.patch_all(objects)

    def watch(
        self,
        cls: type[R],
        since: int,
        stop: threading.Event | None = None,
        timeout: float | None = None,
        name: str | None = None,
    ) -> Iterator[WatchEvent[R]]:
        self._count("watch", cls.KIND)
        for event in self.inner.watch(cls, since, stop, timeout, name):
            self._count("watch-event", cls.KIND)
            yield event

    def revision(self) -> int:
        self._count("revision", "*")
        return self.inner.revision()

    def kind_revision(self, cls: type[Resource]) -> int | None:
        self._count("kind-revision", cls.KIND)
        return self.inner.kind_revision(cls)

    def close(self) -> None:
        self.flush()
        self.inner.close()


def counted(store: Store) -> Store:
    """`store`, counted when $CLUSTERLINK_STORE_COUNT names a directory."""
    directory = os.environ.get(ENV_COUNT)
    return CountingStore(store, Path(directory)) if directory else store
