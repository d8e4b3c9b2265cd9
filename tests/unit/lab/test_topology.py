"""Topology files: validation with clear errors, and a deterministic address plan."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from clusterlink.lab.build import node_lines
from clusterlink.lab.topology import Topology, plan_lab

EXAMPLES = Path(__file__).parents[3] / "examples"


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_examples_are_valid(path: Path) -> None:
    plan = plan_lab(Topology.model_validate(yaml.safe_load(path.read_text())))
    assert plan.clusters and all(c.nodes for c in plan.clusters)


def test_address_plan() -> None:
    plan = plan_lab(
        Topology.model_validate(
            {
                "name": "x",
                "clusters": [
                    {"name": "a", "nodes": 2, "ipFamily": "all", "podsPerNode": 2},
                    {"name": "b", "podCIDRs": ["10.233.64.0/18"]},
                ],
            }
        )
    )
    a, b = plan.clusters
    assert (a.segment, a.router) == (
        {"4": "192.168.1.0/24", "6": "fd00:1::/64"},
        {"4": "192.168.1.254", "6": "fd00:1::fe"},
    )
    assert [(n.name, n.netns, n.ip, n.ip6, n.gateway_candidate) for n in a.nodes] == [
        ("n1", "cl-x-a-n1", "192.168.1.1", "fd00:1::1", True),
        ("n2", "cl-x-a-n2", "192.168.1.2", "fd00:1::2", True),
    ]
    assert a.nodes[1].pod_cidrs == ["10.1.2.0/24", "fd10:1:0:2::/64"]
    assert [(p.name, p.netns, p.ip, p.ip6) for p in a.pods][:2] == [
        ("n1-p1", "cl-x-a-n1-p1", "10.1.1.2", "fd10:1:0:1::2"),
        ("n1-p2", "cl-x-a-n1-p2", "10.1.1.3", "fd10:1:0:1::3"),
    ]
    assert a.service_cidrs == ["10.101.0.0/16", "fd20:1::/108"]
    assert b.nodes[0].pod_cidrs == ["10.233.65.0/24"] and b.ip_family == "ipv4"
    assert b.join.ip_family == "ipv4" and b.join.network_type == "p2p"
    assert plan.namespaces()[0] == "cl-x-fabric" and len(plan.namespaces()) == 1 + 2 + 4 + 2 + 2


def test_clock_skew_lands_on_the_named_node() -> None:
    data = {"name": "x", "clusters": [{"name": "a", "nodes": 3, "clockSkew": {"n2": -30.5}}]}
    plan = plan_lab(Topology.model_validate(data))
    assert [n.clock_skew for n in plan.clusters[0].nodes] == [0.0, -30.5, 0.0]


def test_candidates_default_to_two() -> None:
    plan = plan_lab(Topology.model_validate({"name": "x", "clusters": [{"name": "a", "nodes": 4}]}))
    assert [n.gateway_candidate for n in plan.clusters[0].nodes] == [True, True, False, False]


@pytest.mark.parametrize(
    "data, needle",
    [
        ({"name": "Bad-Name", "clusters": [{"name": "a"}]}, "a lab name is 1-12 lowercase"),
        ({"name": "x", "clusters": []}, "at least 1 item"),
        ({"name": "x", "clusters": [{"name": "a"}, {"name": "a"}]}, "listed twice"),
        ({"name": "x", "clusters": [{"name": "fabric"}]}, "reserved"),
        (
            {"name": "x", "clusters": [{"name": "a", "nodes": 2, "gatewayCandidates": 3}]},
            "exceeds nodes",
        ),
        ({"name": "x", "clusters": [{"name": "a", "ipFamily": "ipv5"}]}, "ipFamily"),
        (
            {"name": "x", "clusters": [{"name": "a", "podCIDRs": ["10.0.0.300/8"]}]},
            "not a valid CIDR",
        ),
        ({"name": "x", "clusters": [{"name": "a", "colour": "red"}]}, "Extra inputs"),
        ({"name": "x", "clusters": [{"name": "a", "clockSkew": {"n3": 1}}]}, "no node 'n3'"),
        ({"name": "x", "clusters": [{"name": "a", "clockSkew": {"node1": 1}}]}, "n1..n2"),
    ],
)
def test_bad_topologies(data: dict[str, object], needle: str) -> None:
    with pytest.raises(ValidationError, match=needle):
        Topology.model_validate(data)


def test_pod_cidr_too_small_for_the_nodes() -> None:
    topo = Topology.model_validate(
        {"name": "x", "clusters": [{"name": "a", "nodes": 20, "podCIDRs": ["10.0.0.0/26"]}]}
    )
    with pytest.raises(ValueError, match="room for fewer than 20 node blocks"):
        plan_lab(topo)


def test_family_without_pod_cidr() -> None:
    topo = Topology.model_validate(
        {"name": "x", "clusters": [{"name": "a", "ipFamily": "all", "podCIDRs": ["10.0.0.0/16"]}]}
    )
    with pytest.raises(ValueError, match="needs an IPv6 pod CIDR"):
        plan_lab(topo)


def test_the_example_is_the_built_in_demo() -> None:
    from clusterlink.lab.demo import DEFAULT_TOPOLOGY

    example = yaml.safe_load((EXAMPLES / "mixed-dual-stack.yaml").read_text())
    assert Topology.model_validate(example) == Topology.model_validate(DEFAULT_TOPOLOGY)


@pytest.mark.parametrize("underlay, on_link", [("bridged", True), ("routed", False)])
def test_underlay_routed_reaches_other_segments_through_the_router(
    underlay: str, on_link: bool
) -> None:
    topo = {"name": "u", "clusters": [{"name": "c", "ipFamily": "all", "underlay": underlay}]}
    plan = plan_lab(Topology.model_validate(topo))
    lines = node_lines(plan.clusters[0], plan.clusters[0].nodes[0])
    assert ("route add 192.168.0.0/16 dev eth0" in lines) is on_link
    assert ("route add fd00::/16 dev eth0" in lines) is on_link
    assert "route add default via 192.168.1.254 dev eth0" in lines
