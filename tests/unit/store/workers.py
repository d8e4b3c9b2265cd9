"""Code run in other processes by the contract suite (importable under `spawn`)."""

from __future__ import annotations

import json
import threading

from clusterlink.api import Cluster
from clusterlink.store.base import Conflict
from clusterlink.store.url import open_store


def bump_counter(url: str, name: str, times: int) -> int:
    """Increment annotation `n` `times` times with compare-and-swap; returns conflicts seen."""
    store = open_store(url)
    conflicts = 0
    done = 0
    while done < times:
        obj = store.get(Cluster, name)
        n = int(obj.metadata.annotations.get("n", "0"))
        obj.metadata.annotations["n"] = str(n + 1)
        try:
            store.update(obj)
        except Conflict:
            conflicts += 1
            continue
        done += 1
    store.close()
    return conflicts


def watch_counter(url: str, since: int, expect: int, out_path: str, timeout: float) -> None:
    """Record (revision, n) of every MODIFIED event until `expect` arrived or time ran out."""
    store = open_store(url)
    seen: list[tuple[int, int]] = []
    stop = threading.Event()
    for event in store.watch(Cluster, since, stop=stop, timeout=timeout):
        if event.type == "MODIFIED":
            seen.append((event.resource_version, int(event.object.metadata.annotations["n"])))
            if len(seen) >= expect:
                break
    with open(out_path, "w") as fh:
        json.dump(seen, fh)
    store.close()
