"""Idle store traffic (issue 13): a connected 20-cluster x 3-node lab (bench_scale's
clusters, 3 nodes each), left alone; store requests per minute, per component role and in all.

Method: `CLUSTERLINK_STORE_COUNT=DIR` makes every process's `open_store` count its Store calls
(`clusterlink.store.counting`; a watch counts once when it starts, as one long request on
Kubernetes, its events apart). After every node is synced the lab settles for SETTLE seconds,
then the counts are read twice, WINDOW seconds apart; the difference is the idle traffic."""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from clusterlink.api.linkhealth import LinkHealth
from clusterlink.federation import lab as deploy
from clusterlink.federation.membership import wait_connected
from clusterlink.lab.lifecycle import lab_down, lab_up
from clusterlink.lab.state import handle_path, store_url
from clusterlink.lab.topology import Topology, plan_lab
from clusterlink.store.counting import ENV_COUNT
from clusterlink.store.sqlite import SqliteStore

CLUSTERS = int(os.environ.get("IDLE_CLUSTERS", "20"))
NODES = int(os.environ.get("IDLE_NODES", "3"))
SETTLE = float(os.environ.get("IDLE_SETTLE", "20"))
WINDOW = float(os.environ.get("IDLE_WINDOW", "60"))


def role(argv: list[str]) -> str:
    for name in ("network-manager", "controller", "elector", "agent", "lab-supervisor"):
        if name in argv:
            return name
    return "other"


def snapshot(directory: Path) -> dict[str, Counter[str]]:
    """role -> 'method kind' -> calls so far (only component processes)."""
    out: dict[str, Counter[str]] = {}
    for f in directory.glob("*.json"):
        try:
            data = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        if int(f.stem) == os.getpid():
            continue
        out.setdefault(role(data["argv"]), Counter()).update(data["counts"])
    return out


def main() -> int:
    os.environ["CLUSTERLINK_LAB_DIR"] = tempfile.mkdtemp(prefix="cl-bench-idle-")
    counts = Path(tempfile.mkdtemp(prefix="cl-bench-idle-counts-"))
    os.environ[ENV_COUNT] = str(counts)  # inherited by the supervisor and every component
    topo = Topology.model_validate(
        {
            "name": "idle",
            "clusters": [
                {
                    "name": f"c{i}",
                    "nodes": NODES,
                    "podsPerNode": 1,
                    "isolated": i % 2 == 1,
                    "gatewayCandidates": 2,
                }
                for i in range(CLUSTERS)
            ],
        }
    )
    plan = plan_lab(topo)
    lab_up(plan, quiet=True)
    try:
        url = store_url(plan.name)
        store = SqliteStore(Path(url.removeprefix("sqlite://")))  # the bench's own: not counted
        for i, c in enumerate(plan.clusters):
            fn = deploy.install if i == 0 else deploy.join
            options = deploy.LinkOptions("p2p" if i % 2 == 0 else "gateway", "ipv4")
            fn(store, url, str(handle_path(plan.name, c.name)), c.name, options, lambda _: None)
        took = wait_connected(store, [c.name for c in plan.clusters], 900)
        time.sleep(SETTLE)
        before = snapshot(counts)
        time.sleep(WINDOW)
        after = snapshot(counts)
        per_min = 60.0 / WINDOW
        print(f"{CLUSTERS} clusters x {NODES} nodes, connected in {took:.0f} s; idle store "
              f"requests per minute over {WINDOW:.0f} s (watch events apart):")  # fmt: skip
        total = 0.0
        for r in sorted(after):
            diff = after[r] - before.get(r, Counter())
            requests = sum(v for k, v in diff.items() if not k.startswith("watch-event"))
            total += requests * per_min
            top = ", ".join(f"{k} {v * per_min:.0f}" for k, v in diff.most_common(4))
            print(f"  {r}: {requests * per_min:.0f}/min ({top})")
        print(f"  all components: {total:.0f}/min")
        agents = after.get("agent", Counter()) - before.get("agent", Counter())
        health = agents["update LinkHealth"] + agents["create LinkHealth"]
        probers = len(store.list(LinkHealth))
        print(
            f"  LinkHealth writes: {health * per_min:.1f}/min from {probers} probing nodes "
            f"({health / WINDOW / max(probers, 1):.4f} writes/s per node)"
        )
        nm = after.get("network-manager", Counter()) - before.get("network-manager", Counter())
        lists = sum(v for k, v in nm.items() if k.startswith("list "))
        writes = sum(v for k, v in nm.items() if k.split()[0] in ("create", "update", "delete"))
        facts = sum(v for k, v in nm.items() if k.startswith("watch-event"))
        print(f"  network-manager: LISTs {lists * per_min:.0f}/min, NodeConfig/Lease writes "
              f"{writes * per_min:.0f}/min, after {facts * per_min:.0f} changes/min of Clusters "
              "and ClusterNodes (gateway moves when electors lose their 2 s leases on a busy host)")  # fmt: skip
        return 0
    finally:
        lab_down(plan.name, quiet=True)


if __name__ == "__main__":
    sys.exit(main())
