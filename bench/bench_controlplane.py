"""Control-plane benchmark (issue 6), medians of 5, on one lab:

- failover: the gateway's underlay link is cut (in the fabric) -> cross-cluster pings to a
  pod behind the gateway flow again. Goal <= 3 s (Kosmos: lease 15 s + 5 s debounce ~ 20 s).
  Baseline, same run: the time from the cut to the new gateway's role being written.
- join: `join` of a 2-node P2P cluster (components start as processes) -> its pod pings a pod of
  the federation. Goal <= 2 s for a node join; a whole cluster join is the harder case.

Both on the embedded `sqlite` store and on the `kube` store (the API server double of
tests/kubeapi.py listening in the lab's fabric, reached by every component over HTTP, as on
Kubernetes); the kube figures are printed with their ratio to sqlite's from the same run.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from clusterlink.agent import netns
from clusterlink.api import ClusterNode
from clusterlink.federation import lab as deploy
from clusterlink.federation.membership import wait_connected
from clusterlink.lab.lifecycle import lab_down, lab_up
from clusterlink.lab.state import handle_path, store_url
from clusterlink.lab.topology import LabPlan, Topology, plan_lab
from clusterlink.store.kube import kube_url
from clusterlink.store.url import open_store

RUNS = 5
TOPOLOGY = {
    "name": "benchcp",
    "clusters": [
        {"name": "c1", "nodes": 2, "podsPerNode": 1},
        {"name": "c2", "nodes": 3, "gatewayCandidates": 2, "isolated": True, "podsPerNode": 1},
        {"name": "c3", "nodes": 2, "podsPerNode": 1},
    ],
}


def ping_ok(netns: str, dst: str) -> bool:
    return (
        subprocess.run(
            ["ip", "netns", "exec", netns, "ping", "-c1", "-W", "0.2", dst], capture_output=True
        ).returncode
        == 0
    )


def gateway(store, cluster: str) -> str:  # type: ignore[no-untyped-def]
    return next(
        cn.spec.node_name
        for cn in store.list(ClusterNode)
        if cn.spec.cluster_name == cluster and cn.spec.is_gateway
    )


API_ADDRESS = "172.31.255.1"  # the double, on the fabric's loopback (kube runs)


def measure(kind: str) -> tuple[float, float, float, list[float], list[float]]:
    """(failover, electing, join medians, failover runs, join runs) with the `kind` store."""
    os.environ["CLUSTERLINK_LAB_DIR"] = tempfile.mkdtemp(prefix="cl-bench-cp-")
    plan = plan_lab(Topology.model_validate(TOPOLOGY))
    lab_up(plan, quiet=True)
    with contextlib.ExitStack() as stack:
        try:
            if kind == "kube":
                url = kube_store_in_fabric(stack, plan.fabric_netns)
                stack.enter_context(netns.entered(plan.fabric_netns))  # reach the double
            else:
                url = store_url(plan.name)
            return run(plan, url)
        finally:
            stack.close()
            lab_down(plan.name, quiet=True)


def kube_store_in_fabric(stack: contextlib.ExitStack, fabric: str) -> str:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.kubeapi import RunningApiServer, kubeconfig_for

    subprocess.run(
        ["ip", "-n", fabric, "addr", "add", f"{API_ADDRESS}/32", "dev", "lo"], check=True
    )
    tmp = Path(tempfile.mkdtemp(prefix="cl-bench-cp-kube-"))
    server = stack.enter_context(RunningApiServer(tmp, netns=fabric, address=API_ADDRESS))
    (tmp / "kubeconfig").write_text(yaml.safe_dump(kubeconfig_for(server.url)))
    return kube_url(str(tmp / "kubeconfig"))


def run(plan: LabPlan, url: str) -> tuple[float, float, float, list[float], list[float]]:
    store = open_store(url)
    handle = lambda c: str(handle_path(plan.name, c))  # noqa: E731
    deploy.install(
        store, url, handle("c1"), "c1", deploy.LinkOptions("p2p", "ipv4"), lambda _: None
    )
    deploy.join(
        store, url, handle("c2"), "c2", deploy.LinkOptions("gateway", "ipv4"), lambda _: None
    )
    wait_connected(store, ["c1", "c2"], 60)
    c1, c2, c3 = plan.cluster("c1"), plan.cluster("c2"), plan.cluster("c3")
    src = c1.pods[0].netns
    behind = next(p for p in c2.pods if p.node == "n3")  # n3 is never a candidate
    failovers, roles = [], []
    for _ in range(RUNS):
        old = gateway(store, "c2")
        port = next(n.fabric_port for n in c2.nodes if n.name == old)
        assert ping_ok(src, behind.ip or "")
        t0 = time.monotonic()
        subprocess.run(["ip", "-n", plan.fabric_netns, "link", "set", port, "down"], check=True)
        role_at = None
        while not ping_ok(src, behind.ip or ""):
            if role_at is None and gateway(store, "c2") != old:
                role_at = time.monotonic() - t0
            if time.monotonic() - t0 > 30:
                raise SystemExit("no failover within 30 s")
        failovers.append(time.monotonic() - t0)
        roles.append(role_at if role_at is not None else failovers[-1])
        subprocess.run(["ip", "-n", plan.fabric_netns, "link", "set", port, "up"], check=True)
        wait_connected(store, ["c1", "c2"], 60)
        time.sleep(1)
    joins = []
    for _ in range(RUNS):
        t0 = time.monotonic()
        deploy.join(
            store, url, handle("c3"), "c3", deploy.LinkOptions("p2p", "ipv4"), lambda _: None
        )
        while not ping_ok(c3.pods[0].netns, c1.pods[1].ip or ""):
            if time.monotonic() - t0 > 60:
                raise SystemExit("join: no ping within 60 s")
        joins.append(time.monotonic() - t0)
        deploy.unjoin(store, "c3", lambda _: None)
    f, r, j = statistics.median(failovers), statistics.median(roles), statistics.median(joins)
    return f, r, j, failovers, joins


def main() -> int:
    kinds = os.environ.get("CONTROLPLANE_STORES", "sqlite,kube").split(",")
    results = {kind: measure(kind) for kind in kinds}
    for kind, (f, r, j, failovers, joins) in results.items():
        print(
            f"[{kind}] failover (link cut -> pings flow): median {f:.2f} s, runs {[round(x, 2) for x in failovers]} (goal <= 3 s; Kosmos ~20 s)"
        )
        print(
            f"[{kind}]   of which electing (cut -> new gateway role written): median {r:.2f} s ({r / f:.0%} of failover)"
        )
        print(
            f"[{kind}] cluster join (join -> first cross-cluster ping): median {j:.2f} s, runs {[round(x, 2) for x in joins]} (goal for a node join <= 2 s)"
        )
    if "sqlite" in results and "kube" in results:
        (fs, _, js, _, _), (fk, _, jk, _, _) = results["sqlite"], results["kube"]
        print(f"kube / sqlite: failover {fk / fs:.2f}x, join {jk / js:.2f}x")
    return 0 if all(f <= 3 and j <= 2 for f, _, j, _, _ in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
