"""`kosmosctl lab demo`: lab up + install + join every cluster + wait + a connectivity check."""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from clusterlink.lab.topology import LabPlan

# The default demo: one P2P and one isolated gateway-mode cluster, dual-stack.
# (examples/mixed-dual-stack.yaml is the same; a test keeps them equal.)
DEFAULT_TOPOLOGY: dict[str, object] = {
    "name": "demo",
    "clusters": [
        {
            "name": "c1",
            "nodes": 3,
            "ipFamily": "all",
            "podCIDRs": ["10.233.64.0/18", "fd11:233::/48"],
            "serviceCIDRs": ["10.233.0.0/18", "fd11:96::/108"],
            "podsPerNode": 1,
            "join": {"networkType": "p2p", "ipFamily": "all"},
        },
        {
            "name": "c2",
            "nodes": 3,
            "ipFamily": "all",
            "podCIDRs": ["10.234.64.0/18", "fd12:234::/48"],
            "serviceCIDRs": ["10.234.0.0/18", "fd12:96::/108"],
            "gatewayCandidates": 2,
            "isolated": True,
            "podsPerNode": 1,
            "join": {"networkType": "gateway", "ipFamily": "all"},
        },
    ],
}


@dataclass(frozen=True)
class Probe:
    src: str  # cluster/node/pod
    dst: str
    target: str
    ok: bool


def pod_matrix(plan: LabPlan) -> list[tuple[str, str, str, str]]:
    """(src label, src netns, dst label, target IP) for every pod pair across clusters, per family."""
    out = []
    for a in plan.clusters:
        for b in plan.clusters:
            if a.name == b.name:
                continue
            for pa in a.pods:
                for pb in b.pods:
                    for ip in (pb.ip, pb.ip6):
                        if ip and (pa.ip if ":" not in ip else pa.ip6):
                            out.append((f"{a.name}/{pa.name}", pa.netns, f"{b.name}/{pb.name}", ip))
    return out


def ping(netns: str, target: str) -> bool:
    cmd = ["ip", "netns", "exec", netns, "ping", "-c", "1", "-W", "1", target]
    if subprocess.run(cmd, capture_output=True).returncode == 0:
        return True
    return subprocess.run(cmd, capture_output=True).returncode == 0  # one retry: a lost first ARP


def check(plan: LabPlan) -> list[Probe]:
    pairs = pod_matrix(plan)
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda p: ping(p[1], p[3]), pairs))
    return [
        Probe(src, dst, target, ok)
        for (src, _, dst, target), ok in zip(pairs, results, strict=True)
    ]
