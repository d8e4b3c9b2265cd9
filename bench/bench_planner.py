"""Planner benchmark (issue 3).

Scenarios, each in a fresh process (for an honest peak RSS):
  p2p-10x100     10 P2P clusters x 100 nodes, one /26 block per node (Kosmos: 86 s, 511 MiB)
  gw-1000x3      1,000 gateway clusters x 3 nodes, pod + service CIDR each (Kosmos: 265 s, 1.37 GiB)
  gw-5000x3      5,000 gateway clusters x 3 nodes, CIDRs from one plan (they aggregate)
  gw-5000x3-rand the same with pod and service CIDRs scattered at random (they do not)

Figures: plan() (the O(N) structure: everything but the per-node lists), fingerprints of every
node, materialising NodeConfigs (all of them, or a sample with the rest extrapolated - said so),
the largest NodeConfig as JSON (etcd's object limit is 1.5 MB), and a re-plan after one node
changed - the incremental Planner patching its last plan (issue 17) - as a ratio to the full
plan (the baseline, same run, each the median of 5); route aggregation
(issue 17): an internal node's table-200 entries and all NodeConfigs' JSON with aggregation
against the same plan without it (`Plan.aggregate = False`, the baseline, same run).
Goals: p2p full plan <= 5 s, one-node change <= 0.2 s and <= 0.05x a full plan (also gateway
1,000 x 3 and 5,000 x 3); gateway 1,000 x 3 <= 10 s; all
NodeConfigs of gw-5000x3 <= 8 GiB of JSON (etcd's largest quota).
"""

from __future__ import annotations

import multiprocessing as mp
import random
import resource
import statistics
import sys
import time
from typing import Any

from clusterlink.api import (
    Cluster,
    ClusterLinkOptions,
    ClusterLinkStatus,
    ClusterNode,
    ClusterNodeSpec,
    ClusterSpec,
    ClusterStatus,
    ObjectMeta,
)
from clusterlink.planner import plan
from clusterlink.planner.incremental import Planner


def federation(clusters: int, nodes: int, mode: str) -> tuple[list[Cluster], list[ClusterNode]]:
    cs, ns = [], []
    rnd = random.Random(17)
    scattered = rnd.sample(range(1 << 16), 2 * clusters)  # distinct /24s of 10.0.0.0/8
    for c in range(clusters):
        a, b = divmod(c, 250)
        pods, svc = f"10.{a}.{b}.0/24", f"11.{a}.{b}.0/24"
        if mode == "gateway-random":
            x, y = scattered[2 * c], scattered[2 * c + 1]
            pods, svc = f"10.{x >> 8}.{x & 255}.0/24", f"10.{y >> 8}.{y & 255}.0/24"
        if mode == "p2p":
            pods, svc = f"10.{c}.0.0/16", f"11.{c}.0.0/16"
        cs.append(
            Cluster(
                metadata=ObjectMeta(name=f"c{c}"),
                spec=ClusterSpec(
                    cluster_link_options=ClusterLinkOptions(
                        network_type="p2p" if mode == "p2p" else "gateway", ip_family="ipv4"
                    )
                ),
                status=ClusterStatus(
                    cluster_link_status=ClusterLinkStatus(pod_cidrs=[pods], service_cidrs=[svc])
                ),
            )
        )
        for n in range(nodes):
            block = [f"10.{c}.{n}.0/26"] if mode == "p2p" else []
            ns.append(
                ClusterNode(
                    metadata=ObjectMeta(name=f"c{c}-n{n}"),
                    spec=ClusterNodeSpec(
                        cluster_name=f"c{c}",
                        node_name=f"n{n}",
                        ip=f"172.{16 + (c * nodes + n) // 65536}.{(c * nodes + n) // 256 % 256}.{(c * nodes + n) % 256}",
                        interface_name="eth0",
                        roles=["gateway"] if n == 0 else [],
                        pod_cidrs=block,
                    ),
                )
            )
    return cs, ns


def run(name: str, clusters: int, nodes: int, mode: str, sample: int | None) -> dict[str, Any]:
    cs, ns = federation(clusters, nodes, mode)
    t = time.perf_counter()
    p = plan(cs, ns)
    t_plan = time.perf_counter() - t

    t = time.perf_counter()
    for n in p.names:
        p.fingerprint(n)
    t_fp = time.perf_counter() - t

    # A contiguous block when sampling: nodes of one cluster share their lists, as in a full run.
    names = p.names if sample is None else p.names[:sample]
    t = time.perf_counter()
    entries = 0
    for n in names:
        entries += p.spec(n).entry_count()
    t_mat = time.perf_counter() - t
    scale = len(p.names) / len(names)
    t = time.perf_counter()
    json_bytes = 0
    for n in names:
        json_bytes += len(p.spec(n).model_dump_json(by_alias=True))
    t_json_all = time.perf_counter() - t

    # Aggregation: the same plan without it is the baseline (one route per remote CIDR).
    plain = plan(cs, ns)
    plain.aggregate = False
    plain_bytes = sum(len(plain.spec(n).model_dump_json(by_alias=True)) for n in names)
    internal = next((n for n in p.names if p.recipes[n].via_gateway), None)
    routes_agg = len(p.spec(internal).routes) if internal else 0
    routes_plain = len(plain.spec(internal).routes) if internal else 0

    largest = max(
        [*p.names[:: max(1, len(p.names) // 50)], p.names[0]], key=lambda n: p.spec(n).entry_count()
    )
    t = time.perf_counter()
    size = len(p.spec(largest).model_dump_json(by_alias=True))
    t_json = time.perf_counter() - t

    # One node changes (a non-gateway node gets a new IP), five times: the incremental
    # Planner patches its last plan; the baseline is a full plan of the same run (median of 5).
    fulls = [t_plan]
    for _ in range(4):
        t = time.perf_counter()
        plan(cs, ns)
        fulls.append(time.perf_counter() - t)
    planner = Planner()
    t = time.perf_counter()
    planner.update(cs, ns)
    t_first = time.perf_counter() - t
    current, replans, changed_counts, reasons = ns, [], [], set()
    for k in range(5):
        changed = list(current)  # as the watch cache hands them over: only one object is new
        changed[1] = current[1].model_copy(deep=True)
        changed[1].spec.ip = f"172.31.255.{250 - k}"
        t = time.perf_counter()
        diff = planner.update(cs, changed)
        replans.append(time.perf_counter() - t)
        changed_counts.append(len(diff.changed))
        reasons.add(planner.last_reason)
        current = changed

    return {
        "name": name,
        "nodes": len(p.names),
        "plan_s": t_plan,
        "fingerprints_s": t_fp,
        "materialise_s": t_mat * scale,
        "materialised": "all"
        if sample is None
        else f"first {len(names)}, extrapolated x{scale:.0f}",
        "json_all_s": t_json_all * scale,
        "json_all_mb": json_bytes * scale / 1e6,
        "json_plain_mb": plain_bytes * scale / 1e6,
        "internal_routes": routes_agg,
        "internal_routes_plain": routes_plain,
        "entries": int(entries * scale),
        "largest_kb": size / 1000,
        "largest_json_s": t_json,
        "full_median_s": statistics.median(fulls),
        "planner_first_s": t_first,
        "replan_s": statistics.median(replans),
        "replan_ratio": statistics.median(replans) / statistics.median(fulls),
        "replan_changed": max(changed_counts),
        "replan_fallbacks": sorted(str(r) for r in reasons if r is not None),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


SCENARIOS = [
    ("p2p-10x100", 10, 100, "p2p", None),
    ("gw-1000x3", 1000, 3, "gateway", None),
    ("gw-5000x3", 5000, 3, "gateway", 300),
    ("gw-5000x3-rand", 5000, 3, "gateway-random", 300),
]


def main() -> int:
    ctx = mp.get_context("spawn")
    ok = True
    for scenario in SCENARIOS:
        results = []
        for _ in range(3):
            with ctx.Pool(1) as pool:
                results.append(pool.apply(run, scenario))
        med = dict(results[0])
        for key in (
            "plan_s",
            "fingerprints_s",
            "materialise_s",
            "replan_s",
            "replan_ratio",
            "full_median_s",
            "planner_first_s",
            "peak_rss_mib",
            "json_all_s",
        ):
            med[key] = statistics.median(r[key] for r in results)
        print(
            f"{med['name']:<12} nodes {med['nodes']:>6}  plan {med['plan_s']:6.2f} s  "
            f"fingerprints {med['fingerprints_s']:5.2f} s  materialise {med['materialise_s']:6.2f} s "
            f"({med['materialised']}, {med['entries']:,} entries; as JSON {med['json_all_mb']:,.0f} MB "
            f"in {med['json_all_s']:.1f} s)  largest NodeConfig "
            f"{med['largest_kb']:.0f} kB  peak RSS {med['peak_rss_mib']:.0f} MiB  (median of 3)"
        )
        print(
            f"{'':<12} incremental re-plan after one node changed: {med['replan_s'] * 1000:.1f} ms"
            f" = {med['replan_ratio']:.3f}x a full plan ({med['full_median_s']:.2f} s, same run;"
            f" each the median of 5) (goal <= 0.05x); {med['replan_changed']} NodeConfigs changed;"
            f" first update (full plan + indexes) {med['planner_first_s']:.2f} s"
            + (f"; FELL BACK: {med['replan_fallbacks']}" if med["replan_fallbacks"] else "")
        )
        if med["internal_routes_plain"]:
            print(
                f"{'':<12} route aggregation: internal node {med['internal_routes']:,} entries "
                f"vs {med['internal_routes_plain']:,} routes without "
                f"({med['internal_routes'] / med['internal_routes_plain']:.4f}x); all NodeConfigs "
                f"{med['json_all_mb'] / 1000:,.2f} GB of JSON vs {med['json_plain_mb'] / 1000:,.2f} GB "
                f"without ({med['json_all_mb'] / med['json_plain_mb']:.2f}x)"
            )
        if med["name"] == "p2p-10x100":
            ok &= med["plan_s"] + med["materialise_s"] <= 5 and med["replan_s"] <= 0.2
        if med["name"] in ("p2p-10x100", "gw-1000x3", "gw-5000x3"):
            ok &= med["replan_ratio"] <= 0.05 and not med["replan_fallbacks"]
        if med["name"] == "gw-1000x3":
            ok &= med["plan_s"] + med["materialise_s"] <= 10
        if med["name"] == "gw-5000x3":
            ok &= med["largest_kb"] < 1500 and med["json_all_mb"] <= 8 * 1024**3 / 1e6
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
