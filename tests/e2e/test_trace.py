"""`kosmosctl trace` in a lab, live kernels read: a complete path P2P node -> remote gateway
-> its internal node, then each cause injected (a family the cluster does not enable, a route
deleted by hand while the agent is stopped, a gateway whose agent is stopped while its
NodeConfig changes) stops the trace at the named hop."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clusterlink.api import NodeConfig, Route
from clusterlink.lab.state import store_url
from tests.e2e.conftest import lab_name
from tests.e2e.connect import Lab, joined_lab, wait_for
from tests.e2e.test_connect import _component_pid, gateway_of

pytestmark = [pytest.mark.netns, pytest.mark.slow]

KOSMOSCTL = str(Path(sys.executable).with_name("kosmosctl"))
SRC, DST = "c1/n1/p1", "c2/n3/p1"  # c2/n3 is not a gateway candidate: behind c2's gateway


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    topology = {
        "name": lab_name("obtr"),
        "clusters": [
            {"name": "c1", "nodes": 2, "ipFamily": "all", "podsPerNode": 1},
            {"name": "c2", "nodes": 3, "ipFamily": "all", "gatewayCandidates": 2, "podsPerNode": 1},
        ],
    }
    joins = {"c1": ("p2p", "all"), "c2": ("gateway", "ipv4")}  # c2: no IPv6 across the link
    with joined_lab(topology, joins, tmp_path_factory.mktemp("trace")) as lab:
        yield lab


def run_trace(lab: Lab, *args: str) -> tuple[int, dict[str, Any]]:
    out = subprocess.run(
        [KOSMOSCTL, "trace", SRC, DST, *args, "--store", store_url(lab.plan.name), "-o", "json"],
        capture_output=True,
        text=True,
    )
    assert out.returncode in (0, 1), out.stderr
    return out.returncode, json.loads(out.stdout)


def signal_component(lab: Lab, name: str, sig: str) -> None:
    subprocess.run(["kill", f"-{sig}", str(_component_pid(lab, name))], check=True)


def test_complete_path_with_the_live_kernels(lab: Lab) -> None:
    code, result = run_trace(lab)
    gw = f"c2-{gateway_of(lab, 'c2')}"
    hops = [(h["node"], h["step"]) for h in result["hops"]]
    assert code == 0 and result["complete"], result
    assert hops == [
        ("c1-n1", "synced"),
        ("c1-n1", "route"),
        ("c1-n1", "fdb"),
        (gw, "synced"),
        (gw, "cluster"),
        ("c2-n3", "synced"),
        ("c2-n3", "deliver"),
    ]
    route = result["hops"][1]
    assert "dev vx-bridge" in route["kernel"] and "table 200" in route["kernel"]
    assert result["hops"][2]["kernel"] == "neighbour present, FDB present"
    assert result["hops"][-1]["kernel"].startswith("dev ")  # the pod's veth, none of ours


def test_a_family_the_remote_cluster_does_not_enable(lab: Lab) -> None:
    code, result = run_trace(lab, "--family", "6")
    assert code == 1
    assert (result["brokenAt"], result["cause"]) == ("c1-n1 family", "family not enabled")


def test_a_route_deleted_by_hand_is_drift(lab: Lab) -> None:
    nc = lab.store.get(NodeConfig, "c1-n1")
    dst_ip = lab.plan.cluster("c2").pods[2].ip or ""
    cidr = next(
        r.cidr
        for r in nc.spec.routes
        if ipaddress.ip_address(dst_ip) in ipaddress.ip_network(r.cidr)
    )
    netns = lab.plan.cluster("c1").nodes[0].netns
    signal_component(lab, "c1.agent.n1", "STOP")  # or it would repair the route
    try:
        subprocess.run(["ip", "-n", netns, "route", "del", cidr, "table", "200"], check=True)
        code, result = run_trace(lab)
        assert code == 1
        assert (result["brokenAt"], result["cause"]) == ("c1-n1 route", "drift")
    finally:
        signal_component(lab, "c1.agent.n1", "CONT")
    wait_for(lambda: run_trace(lab)[0] == 0, 60, "the agent repairs the route")


def test_a_stopped_gateway_agent_leaves_its_node_not_synced(lab: Lab) -> None:
    gw = gateway_of(lab, "c2")
    signal_component(lab, f"c2.agent.{gw}", "STOP")
    try:
        nc = lab.store.get(NodeConfig, f"c2-{gw}")
        extra = Route(cidr="10.254.0.0/24", gw=nc.spec.routes[0].gw, dev=nc.spec.routes[0].dev)
        spec = nc.spec.model_copy(update={"routes": [*nc.spec.routes, extra]})
        lab.store.update(nc.model_copy(update={"spec": spec}))  # a new generation, not applied
        code, result = run_trace(lab)
        assert code == 1
        assert (result["brokenAt"], result["cause"]) == (f"c2-{gw} synced", "node not synced")
    finally:
        signal_component(lab, f"c2.agent.{gw}", "CONT")
