"""Store benchmark: updates/s (1 and 4 processes) and watch latency commit -> other process.

Baseline, measured in the same run: the same JSON document rewritten with bare sqlite3
(BEGIN IMMEDIATE / UPDATE / COMMIT, same WAL settings) - the floor our store builds on.
Goal (issue 2): watch delivery p50 <= 50 ms.

The `kube` backend against the API server double (tests/kubeapi.py, in this process): updates/s
through KubeStore next to the same GET + PUT requests made with bare httpx (the client's own
cost), and watch delivery. The double is not an API server: these figures are our client's
overhead, not a cluster's speed.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

from clusterlink.api import Cluster, ObjectMeta
from clusterlink.store.base import Conflict
from clusterlink.store.url import open_store

UPDATES = 2_000
LATENCY_SAMPLES = 500


def raw_sqlite_updates(path: Path, n: int) -> float:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE t (k TEXT PRIMARY KEY, data TEXT)")
    doc = Cluster(metadata=ObjectMeta(name="c")).to_dict()
    db.execute("INSERT INTO t VALUES ('c', ?)", (json.dumps(doc),))
    start = time.perf_counter()
    for i in range(n):
        doc["metadata"]["annotations"]["n"] = str(i)
        db.execute("BEGIN IMMEDIATE")
        db.execute("UPDATE t SET data = ? WHERE k = 'c'", (json.dumps(doc),))
        db.execute("COMMIT")
    return n / (time.perf_counter() - start)


def store_updates(url: str, name: str, n: int) -> tuple[int, float]:
    store = open_store(url)
    done = conflicts = 0
    start = time.perf_counter()
    while done < n:
        obj = store.get(Cluster, name)
        obj.metadata.annotations["n"] = str(done)
        try:
            store.update(obj)
            done += 1
        except Conflict:
            conflicts += 1
    return conflicts, time.perf_counter() - start


def watcher(url: str, since: int, n: int, out: str) -> None:
    store = open_store(url)
    got: dict[int, float] = {}
    for ev in store.watch(Cluster, since, timeout=120):
        got[ev.resource_version] = time.monotonic()  # CLOCK_MONOTONIC is system-wide
        if len(got) >= n:
            break
    Path(out).write_text(json.dumps(got))


def kube_figures(tmp: Path) -> tuple[float, float, float]:
    """(KubeStore updates/s, bare httpx updates/s, watch p50 ms) against the double."""
    import threading

    import httpx2 as httpx

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.kubeapi import RunningApiServer

    from clusterlink.store.kube import kube_url

    n = UPDATES // 4
    with RunningApiServer(tmp) as server:
        store = open_store(kube_url(str(server.kubeconfig)))
        store.create(Cluster(metadata=ObjectMeta(name="k")))
        _, secs = store_updates(kube_url(str(server.kubeconfig)), "k", n)
        ours = n / secs
        path = f"{server.url}/apis/kosmos.io/v1alpha1/clusters/k"
        with httpx.Client() as client:
            start = time.perf_counter()
            for i in range(n):
                doc = client.get(path).json()
                doc["metadata"]["annotations"]["n"] = f"raw{i}"
                client.put(path, json=doc).raise_for_status()
            bare = n / (time.perf_counter() - start)
        since = store.revision()
        got: dict[int, float] = {}
        stop = threading.Event()

        def watch() -> None:
            for ev in store.watch(Cluster, since, stop=stop):
                got[ev.resource_version] = time.monotonic()
                if len(got) >= 200:
                    stop.set()

        t = threading.Thread(target=watch, daemon=True)
        t.start()
        committed: dict[int, float] = {}
        obj = store.get(Cluster, "k")
        for i in range(200):
            obj.metadata.annotations["n"] = f"w{i}"
            obj = store.update(obj)
            committed[int(obj.metadata.resource_version or 0)] = time.monotonic()
            time.sleep(0.004)
        t.join(30)
        lat = sorted((got[rv] - c) * 1000 for rv, c in committed.items() if rv in got)
        return ours, bare, statistics.median(lat) if lat else float("nan")


def main() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="cl-bench-store-"))
    url = f"sqlite://{tmp}/s.db"
    store = open_store(url)
    for i in range(4):
        store.create(Cluster(metadata=ObjectMeta(name=f"c{i}")))

    base = raw_sqlite_updates(tmp / "raw.db", UPDATES)
    _, secs = store_updates(url, "c0", UPDATES)
    one = UPDATES / secs

    ctx = mp.get_context("spawn")
    with ctx.Pool(4) as pool:
        pool.starmap(store_updates, [(url, f"c{i}", 1) for i in range(4)])  # warm up imports
        start = time.perf_counter()
        res = pool.starmap(store_updates, [(url, f"c{i}", UPDATES // 4) for i in range(4)])
        four_distinct = UPDATES / (time.perf_counter() - start)
        start = time.perf_counter()
        res = pool.starmap(store_updates, [(url, "c0", UPDATES // 4)] * 4)
        four_hot = UPDATES / (time.perf_counter() - start)
        conflicts = sum(c for c, _ in res)

    # Watch latency: commit returns in this process -> event arrives in another process.
    out = tmp / "lat.json"
    since = store.revision()
    proc = ctx.Process(target=watcher, args=(url, since, LATENCY_SAMPLES, str(out)))
    proc.start()
    time.sleep(1.5)  # let the watcher start
    committed: dict[int, float] = {}
    obj = store.get(Cluster, "c1")
    for i in range(LATENCY_SAMPLES):
        obj.metadata.annotations["n"] = f"lat{i}"
        obj = store.update(obj)
        committed[int(obj.metadata.resource_version or 0)] = time.monotonic()
        time.sleep(0.004)
    proc.join(60)
    got = {int(k): v for k, v in json.loads(out.read_text()).items()}
    lat = sorted((got[rv] - t) * 1000 for rv, t in committed.items() if rv in got)
    p50 = statistics.median(lat)
    p99 = lat[int(len(lat) * 0.99) - 1]

    print(
        f"store updates/s, 1 process:              {one:8.0f}   (raw sqlite floor {base:.0f}/s, ratio {one / base:.2f})"
    )
    print(
        f"store updates/s, 4 processes, 4 objects:  {four_distinct:8.0f}   (ratio to 1 process {four_distinct / one:.2f})"
    )
    print(
        f"store updates/s, 4 processes, 1 object:   {four_hot:8.0f}   ({conflicts} CAS conflicts retried)"
    )
    print(
        f"watch latency commit->other process: p50 {p50:.1f} ms, p99 {p99:.1f} ms over {len(lat)} events (goal p50 <= 50 ms)"
    )
    k_ours, k_bare, k_p50 = kube_figures(tmp)
    print(
        f"kube store updates/s (double):            {k_ours:8.0f}   (bare httpx GET+PUT {k_bare:.0f}/s, ratio {k_ours / k_bare:.2f})"
    )
    print(f"kube watch latency (double, in process): p50 {k_p50:.1f} ms")
    return 0 if p50 <= 50 and len(lat) == LATENCY_SAMPLES else 1


if __name__ == "__main__":
    sys.exit(main())
