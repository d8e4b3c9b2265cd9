"""directRouting's fact, as the agent reports it: what the node reaches on its NIC without a
gateway; and the agent's handling of direct routes (on the NIC, not on a device of ours)."""

from __future__ import annotations

import pytest

from clusterlink.agent.detect import detect, merged
from clusterlink.agent.onlink import MAX_PREFIXES, RTN_UNICAST, on_link_prefixes
from clusterlink.agent.reconcile import reconcile
from clusterlink.api import ClusterNodeSpec, NodeConfigSpec, Route
from tests.unit.agent.test_detect import LINKS, NODE, cluster
from tests.unit.agent.test_reconcile import BRIDGE, ROUTE, R, host, spec

NIC, OTHER = 2, 7
U = RTN_UNICAST


@pytest.mark.parametrize(
    "routes, expected",
    [
        ([("192.168.1.0/24", "", NIC, U)], ("192.168.1.0/24",)),
        (  # the lab's shape: own segment and every other one on-link, default via a router
            [("192.168.1.0/24", "", NIC, U), ("192.168.0.0/16", "", NIC, U),
             ("0.0.0.0/0", "192.168.1.254", NIC, U), ("fd00:1::/64", "", NIC, U),
             ("fe80::/64", "", NIC, U), ("fd00::/16", "", NIC, U)],
            ("192.168.0.0/16", "fd00::/16"),
        ),
        (  # a more specific route via a gateway, or on another device, is cut out
            [("192.168.0.0/24", "", NIC, U), ("192.168.0.128/25", "192.168.0.1", NIC, U),
             ("192.168.0.64/26", "", OTHER, U)],
            ("192.168.0.0/26",),
        ),
        ([("10.0.0.0/8", "", OTHER, U), ("0.0.0.0/0", "10.0.0.1", NIC, U)], ()),
        ([("10.0.0.0/8", "", NIC, 2)], ()),  # not unicast (local, broadcast, ...)
    ],
    ids=["connected", "lab", "cut-out", "only-gateways", "not-unicast"],
)  # fmt: skip
def test_on_link_prefixes(
    routes: list[tuple[str, str, int, int]], expected: tuple[str, ...]
) -> None:
    assert on_link_prefixes(routes, NIC) == expected


def test_on_link_prefixes_are_bounded() -> None:
    routes = [("10.0.0.0/8", "", NIC, U)] + [
        (f"10.{i}.0.0/16", "10.0.0.1", NIC, U) for i in range(0, 256, 2)
    ]
    assert len(on_link_prefixes(routes, NIC)) == MAX_PREFIXES


def test_detection_reports_on_link_prefixes_only_with_direct_routing() -> None:
    ask = {"eth0": ("192.168.0.0/16",)}
    found, _ = detect(cluster(direct_routing=True), NODE, LINKS, lambda t: "192.168.1.5", ask.get)  # type: ignore[arg-type]
    assert found is not None and found.on_link == ("192.168.0.0/16",)
    found, _ = detect(cluster(), NODE, LINKS, lambda t: "192.168.1.5", ask.get)  # type: ignore[arg-type]
    assert found is not None and found.on_link == ()
    known = ClusterNodeSpec(cluster_name="c", on_link_cidrs=["192.168.0.0/16"])
    assert merged(known, found).on_link_cidrs == []  # opted out: the planner needs none


DIRECT = Route(cidr="10.3.0.0/16", gw="192.168.0.3", dev="eth0")
D = ("10.3.0.0/16", "192.168.0.3", "eth0", 0)


def test_direct_routes_are_ours_on_the_nic_and_foreign_ones_are_not() -> None:
    kernel, fw = host()
    foreign = ("10.9.0.0/16", "192.168.0.254", "eth0", 0)  # someone else's table-200 route
    kernel.routes.add(foreign)
    report = reconcile(kernel, fw, spec(BRIDGE, routes=(ROUTE, DIRECT)))
    assert report.errors == [] and kernel.routes == {R, D, foreign}
    assert reconcile(kernel, fw, spec(BRIDGE, routes=(ROUTE, DIRECT))).changes == 0
    kernel.routes.discard(D)  # drift: repaired in one pass
    assert reconcile(kernel, fw, spec(BRIDGE, routes=(ROUTE, DIRECT))).entries_added == 1
    # the peer is no longer on-link: the NodeConfig moves the block to the tunnel
    moved = Route(cidr="10.3.0.0/16", gw="220.0.0.3", dev="vx-bridge")
    reconcile(kernel, fw, spec(BRIDGE, routes=(ROUTE, moved)))
    assert kernel.routes == {R, ("10.3.0.0/16", "220.0.0.3", "vx-bridge", 0), foreign}
    reconcile(kernel, fw, spec(BRIDGE, routes=(ROUTE, DIRECT)))
    reconcile(kernel, fw, None)  # teardown: ours go, the foreign one stays
    assert kernel.routes == {foreign}


def test_direct_routes_survive_a_vx_device_that_cannot_be_built() -> None:
    kernel, fw = host()
    broken = BRIDGE.model_copy(update={"bind_dev": "eth9"})
    report = reconcile(kernel, fw, NodeConfigSpec(devices=[broken], routes=[ROUTE, DIRECT]))
    assert any("eth9" in e for e in report.errors)
    assert kernel.routes == {D}
