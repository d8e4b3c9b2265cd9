"""Scale (issue 5): a connected 20-cluster x 5-node lab (one pod per node; even clusters P2P,
odd ones isolated gateway-mode) on this host. Reports lab up, install + join of all clusters
until every node is synced, the component processes' memory, the host's load while idle, and
a sample of cross-cluster pod pings. Baseline, same run: the lab without clusterlink."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import time

from clusterlink.federation import lab as deploy
from clusterlink.federation.membership import wait_connected
from clusterlink.lab import supervisor
from clusterlink.lab.lifecycle import lab_down, lab_up
from clusterlink.lab.state import handle_path, state_dir, store_url
from clusterlink.lab.topology import Topology, plan_lab
from clusterlink.store.url import open_store

CLUSTERS, NODES = (
    int(os.environ.get("SCALE_CLUSTERS", "20")),
    int(os.environ.get("SCALE_NODES", "5")),
)


def rss_mib(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as fh:
                total += next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:"))
        except (FileNotFoundError, StopIteration):
            pass
    return total / 1024


def cpu_seconds(pids: list[int]) -> float:
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except FileNotFoundError:
            pass
    return total / ticks


def main() -> int:
    os.environ["CLUSTERLINK_LAB_DIR"] = tempfile.mkdtemp(prefix="cl-bench-scale-")
    topo = Topology.model_validate(
        {
            "name": "scale",
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
    t0 = time.monotonic()
    lab_up(plan, quiet=True)
    t_up = time.monotonic() - t0
    try:
        url = store_url(plan.name)
        store = open_store(url)
        names = [c.name for c in plan.clusters]
        t0 = time.monotonic()
        for i, c in enumerate(plan.clusters):
            mode = "p2p" if i % 2 == 0 else "gateway"
            fn = deploy.install if i == 0 else deploy.join
            fn(
                store,
                url,
                str(handle_path(plan.name, c.name)),
                c.name,
                deploy.LinkOptions(mode, "ipv4"),
                lambda _: None,
            )  # type: ignore[arg-type]
        wait_connected(store, names, 600)
        t_join = time.monotonic() - t0
        status = supervisor.read_status(state_dir(plan.name))
        pids = [s["pid"] for s in status.values() if s.get("pid")]
        time.sleep(5)
        c0 = cpu_seconds(pids)
        time.sleep(10)
        idle_cpu = (cpu_seconds(pids) - c0) / 10
        mem = rss_mib(pids)
        rng = random.Random(1)
        pods = [(c.name, p) for c in plan.clusters for p in c.pods]
        sample = [(a, b) for a, b in (rng.sample(pods, 2) for _ in range(200)) if a[0] != b[0]]
        ok = sum(
            subprocess.run(
                ["ip", "netns", "exec", a[1].netns, "ping", "-c1", "-W1", b[1].ip or ""],
                capture_output=True,
            ).returncode
            == 0
            for a, b in sample
        )
        # The doctor: the full pod-network matrix of the federation (every pod x every pod).
        handles = []
        for c in plan.clusters:
            handles += ["--src-kubeconfig", str(handle_path(plan.name, c.name))]
        t0 = time.monotonic()
        run = subprocess.run(
            [
                "/usr/bin/time",
                "-f",
                "%M",
                sys.executable,
                "-m",
                "clusterlink.cli.kosmosctl",
                "dr",
                *handles,
                "-o",
                "json",
                "--timeout",
                "2",
            ],
            capture_output=True,
            text=True,
        )
        t_dr = time.monotonic() - t0
        dr_rss = int(run.stderr.strip().splitlines()[-1]) / 1024
        dr_summary = json.loads(run.stdout)["summary"]
        print(
            f"{CLUSTERS} clusters x {NODES} nodes: lab up {t_up:.1f} s; install + {CLUSTERS} joins until all {CLUSTERS * NODES} nodes synced {t_join:.1f} s"
        )
        print(
            f"{len(pids)} component processes: {mem:.0f} MiB RSS in all ({mem / max(1, len(pids)):.0f} MiB each), idle CPU {idle_cpu:.2f} cores"
        )
        print(f"cross-cluster pod pings (random sample): {ok}/{len(sample)}")
        print(
            f"kosmosctl dr, full pod matrix: {dr_summary['total']} probes, {dr_summary['passed']} passed, "
            f"in {t_dr:.1f} s wall (goal <= 30 s for ~10k), kosmosctl peak RSS {dr_rss:.0f} MiB "
            f"(plus one floater process per pod); failures by reason {dr_summary['reasons']}"
        )
        return 0 if ok == len(sample) else 1
    finally:
        lab_down(plan.name, quiet=True)


if __name__ == "__main__":
    sys.exit(main())
