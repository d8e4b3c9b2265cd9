"""Live connection health with real packets: every link up (`get connections --wait`), a
remote gateway cut off in the fabric shows `down` (the prober's hysteresis: two lost probes),
and after a failover (its link down) the new gateway's link shows `up`."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clusterlink.api.clusternode import cluster_node_name
from clusterlink.lab.build import FABRIC_BRIDGE
from clusterlink.lab.state import store_url
from clusterlink.observe.connections import connections
from clusterlink.store.base import Store
from tests.e2e.connect import joined_lab, wait_for
from tests.e2e.test_connect import gateway_of

pytestmark = [pytest.mark.netns, pytest.mark.slow]

KOSMOSCTL = str(Path(sys.executable).with_name("kosmosctl"))
TOPOLOGY = {
    "name": "health",
    "clusters": [
        {"name": "c1", "nodes": 2, "ipFamily": "ipv4", "gatewayCandidates": 1},
        {"name": "c2", "nodes": 3, "ipFamily": "ipv4", "gatewayCandidates": 2},
    ],
}


def status(store: Store, source: str, target: str, target_node: str | None = None) -> str | None:
    """The status of the one source -> target row (through `target_node`, if given)."""
    rows = [
        c
        for c in connections(store)
        if (c.source, c.target) == (source, target) and target_node in (None, c.target_node)
    ]
    return rows[0].status if len(rows) == 1 else None


def test_a_cut_gateway_shows_down_and_failover_up(tmp_path: Path) -> None:
    joins = {"c1": ("gateway", "ipv4"), "c2": ("gateway", "ipv4")}
    with joined_lab(TOPOLOGY, joins, tmp_path) as lab:
        url = store_url(lab.plan.name)
        out = subprocess.run(
            [
                KOSMOSCTL,
                "get",
                "connections",
                "--store",
                url,
                "--wait",
                "--timeout",
                "30",
                "-o",
                "json",
            ],
            capture_output=True,
            text=True,
        )
        assert out.returncode == 0, out.stderr
        rows = json.loads(out.stdout)["items"]
        assert {(r["source"], r["target"], r["status"]) for r in rows} == {
            ("c1", "c2", "up"),
            ("c2", "c1", "up"),
        }
        assert all(r["rttSeconds"] is not None for r in rows)
        # Cut c2's gateway off in the fabric, its NIC keeps its carrier: no failover.
        old = gateway_of(lab, "c2")
        port = next(n.fabric_port for n in lab.plan.cluster("c2").nodes if n.name == old)
        fabric = lab.plan.fabric_netns
        subprocess.run(["ip", "-n", fabric, "link", "set", port, "nomaster"], check=True)
        try:
            took = wait_for(lambda: status(lab.store, "c1", "c2") == "down", 10, "c1->c2 down")
            print(f"c1->c2 down {took:.2f} s after the cut")
            out = subprocess.run(
                [KOSMOSCTL, "get", "connections", "--store", url, "--wait", "--timeout", "1"],
                capture_output=True,
                text=True,
            )
            assert out.returncode == 1 and "not up" in out.stderr
        finally:
            subprocess.run(
                ["ip", "-n", fabric, "link", "set", port, "master", FABRIC_BRIDGE], check=True
            )
        wait_for(lambda: status(lab.store, "c1", "c2") == "up", 10, "c1->c2 up again")
        # Failover: the gateway's link goes down, the other candidate takes over.
        subprocess.run(["ip", "-n", fabric, "link", "set", port, "down"], check=True)
        try:
            cut = time.monotonic()
            wait_for(lambda: gateway_of(lab, "c2") != old, 10, "failover")
            new = cluster_node_name("c2", gateway_of(lab, "c2"))
            wait_for(lambda: status(lab.store, "c1", "c2", new) == "up", 10, "up via the new one")
            print(f"c1->c2 up via the new gateway {time.monotonic() - cut:.2f} s after the cut")
        finally:
            subprocess.run(["ip", "-n", fabric, "link", "set", port, "up"], check=True)
