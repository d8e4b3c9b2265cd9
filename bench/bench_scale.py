"""Scale (issue 5): a connected 20-cluster x 5-node lab (one pod per node; even clusters P2P,
odd ones isolated gateway-mode) on this host. Reports lab up, install + join of all clusters
until every node is synced, the component processes' memory (PSS and RSS) and their own CPU
while idle (from /proc/PID/stat, so other load on the host does not count), each beside issue
17's goal, and a sample of cross-cluster pod pings, then the doctor's full matrix.

Env: SCALE_CLUSTERS / SCALE_NODES (20 x 5), SCALE_LAB (the lab's name, "scale"),
SCALE_IDLE_WINDOW (seconds, 20), SCALE_SKIP_DR=1 (no doctor run)."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from clusterlink.api.nodeconfig import NodeConfig
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
LAB = os.environ.get("SCALE_LAB", "scale")  # the lab's name (its namespaces' prefix)
IDLE_WINDOW = float(os.environ.get("SCALE_IDLE_WINDOW", "20"))  # seconds of idle CPU measured
SKIP_DR = os.environ.get("SCALE_SKIP_DR") == "1"  # leave the doctor's full matrix out
GOAL_CPU, GOAL_MEM_MIB, GOAL_JOIN_S = 0.15, 3000, 30.0  # issue 17's goals at 20 x 5


def _kib(pid: int, path: str, field: str) -> int:
    try:
        with open(f"/proc/{pid}/{path}") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith(field))
    except (FileNotFoundError, ProcessLookupError, StopIteration):
        return 0


def rss_mib(pids: list[int]) -> float:
    return sum(_kib(pid, "status", "VmRSS:") for pid in pids) / 1024


def pss_mib(pids: list[int]) -> float:
    """Proportional set size: pages shared by N processes count 1/N in each (what the
    processes cost the host together, unlike RSS, which counts shared pages N times)."""
    return sum(_kib(pid, "smaps_rollup", "Pss:") for pid in pids) / 1024


def role(component: str) -> str:
    """`c0.agent.n1` -> `agent`, `network-manager` -> itself."""
    parts = component.split(".")
    return parts[1] if len(parts) > 1 else component


def component_pids(state: Path) -> dict[int, str]:
    """The lab's component processes and their children (a component's own helpers count
    as its CPU too), each with its component's role."""
    found = supervisor.running_components(state)
    roots = {pid: role(name) for name, pids in found.items() for pid in pids}
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out: dict[int, str] = {}
    todo = list(roots.items())
    while todo:
        pid, name = todo.pop()
        if pid not in out:
            out[pid] = name
            todo += [(child, name) for child in children.get(pid, [])]
    return out


def cpu_seconds(pids: list[int], own: bool = True, reaped: bool = True) -> float:
    """utime + stime (`own`), and cutime + cstime (`reaped`): the children it ran and reaped
    (iptables-save, ip, nft) are its CPU too."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            total += sum(int(f) for f in fields[11:13]) if own else 0
            total += sum(int(f) for f in fields[13:15]) if reaped else 0
        except FileNotFoundError:
            pass
    return total / ticks


def host_cpu_seconds() -> float:
    """CPU time the whole host spent (every process, not idle or iowait) since boot."""
    with open("/proc/stat") as fh:
        fields = [int(f) for f in fh.readline().split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    os.environ["CLUSTERLINK_LAB_DIR"] = tempfile.mkdtemp(prefix="cl-bench-scale-")
    topo = Topology.model_validate(
        {
            "name": LAB,
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
        t0, host0, own0 = time.monotonic(), host_cpu_seconds(), time.process_time()
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
        t_registered = time.monotonic() - t0
        waited: dict[str, tuple[float, float]] = {}  # what was waited for: (first, last) seen

        def seen(message: str) -> None:
            what = message.removeprefix("waiting for ").split(": ", 1)[-1]
            what = what.split(" generation")[0]  # "its agent to apply generation N"
            now = time.monotonic() - t0
            waited[what] = (waited.get(what, (now, now))[0], now)

        wait_connected(store, names, 600, progress=seen)
        t_join = time.monotonic() - t0
        host_join, own_join = host_cpu_seconds() - host0, time.process_time() - own0
        roles = component_pids(state_dir(plan.name))
        join_cpu: dict[str, float] = {}
        ncpu = os.cpu_count() or 1
        if (sup := supervisor.supervisor_pid(state_dir(plan.name))) is not None:
            join_cpu["supervisor"] = cpu_seconds([sup])  # its share since lab up
        for pid, r in roles.items():  # all started during the join: their CPU is the join's
            join_cpu[r] = join_cpu.get(r, 0.0) + cpu_seconds([pid])
        agents = [pid for pid, r in roles.items() if r == "agent"]
        tools = cpu_seconds(agents, own=False)
        print(
            f"CPU during the join: host {host_join:.1f} s of {ncpu * t_join:.0f} ({ncpu} cores), this "
            f"process {own_join:.1f} s, components "
            + ", ".join(f"{r} {c:.1f}" for r, c in sorted(join_cpu.items()))
            + f" s (agents: {tools:.1f} s of it in the tools they ran)",
            flush=True,
        )
        generations = [nc.metadata.generation for nc in store.list(NodeConfig)]
        print(
            f"NodeConfig generations written until synced (each one an apply by its agent): "
            f"mean {sum(generations) / max(1, len(generations)):.1f}, max {max(generations, default=0)}"
        )
        print(
            f"phases (s after the first install call): {CLUSTERS} joins registered {t_registered:.1f}; "
            + "; ".join(
                f"{what} {first:.1f}-{last:.1f}"
                for what, (first, last) in sorted(waited.items(), key=lambda kv: kv[1])
            ),
            flush=True,
        )
        pids = sorted(roles)
        print(f"connected; idle CPU over the next {IDLE_WINDOW + 5:.0f} s", flush=True)
        time.sleep(5)
        w0 = time.monotonic()
        c0 = {pid: cpu_seconds([pid]) for pid in pids}
        time.sleep(IDLE_WINDOW)
        window = time.monotonic() - w0
        by_role: dict[str, float] = {}
        for pid in pids:
            used = (cpu_seconds([pid]) - c0[pid]) / window
            by_role[roles[pid]] = by_role.get(roles[pid], 0.0) + used
        idle_cpu = sum(by_role.values())
        mem, pss = rss_mib(pids), pss_mib(pids)
        pss_by_role: dict[str, float] = {}
        for pid in pids:
            pss_by_role[roles[pid]] = pss_by_role.get(roles[pid], 0.0) + pss_mib([pid])
        print(
            f"{CLUSTERS} clusters x {NODES} nodes: lab up {t_up:.1f} s; install + {CLUSTERS} "
            f"joins until all {CLUSTERS * NODES} nodes synced {t_join:.1f} s "
            f"(goal <= {GOAL_JOIN_S:.0f} s at 20 x 5)"
        )
        print(
            f"idle CPU of the {len(pids)} component processes (their own CPU time over "
            f"{IDLE_WINDOW:.0f} s): {idle_cpu:.3f} cores (goal <= {GOAL_CPU} at 20 x 5); by role: "
            + ", ".join(f"{r} {c:.3f}" for r, c in sorted(by_role.items()))
        )
        print(
            f"component memory: {pss:.0f} MiB PSS (goal <= {GOAL_MEM_MIB} MiB at 20 x 5); "
            f"{mem:.0f} MiB RSS ({mem / max(1, len(pids)):.0f} MiB each); PSS by role: "
            + ", ".join(f"{r} {m:.0f}" for r, m in sorted(pss_by_role.items())),
            flush=True,
        )
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
        print(f"cross-cluster pod pings (random sample): {ok}/{len(sample)}", flush=True)
        if SKIP_DR:
            return 0 if ok == len(sample) else 1
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
        dr_out = json.loads(run.stdout)
        dr_summary = dr_out["summary"]
        failed = [r for r in dr_out["results"] if not r.get("ok", True)]
        print(
            f"kosmosctl dr, full pod matrix: {dr_summary['total']} probes, {dr_summary['passed']} passed, "
            f"in {t_dr:.1f} s wall (goal <= 10 s for 10,000 probes at 20 x 5), kosmosctl peak RSS {dr_rss:.0f} MiB "
            f"(plus one floater process per pod); failures by reason {dr_summary['reasons']}"
        )
        for r in failed[:10]:  # which pairs: a node, a cluster, or spread over the matrix?
            print("  failed:", json.dumps({k: v for k, v in r.items() if k != "trace"}))
        return 0 if ok == len(sample) and not failed else 1
    finally:
        lab_down(plan.name, quiet=True)


if __name__ == "__main__":
    sys.exit(main())
