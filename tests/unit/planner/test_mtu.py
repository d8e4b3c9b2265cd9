"""Path MTU per route and the MSS clamp: clusters on different underlay MTUs.

A route toward a CIDR carries min(receiver's underlay MTU, every underlay MTU on the way to
the advertiser) minus the tunnel overhead (50 over IPv4, 70 over IPv6) when that is below the
device's MTU; 0 (the device MTU, left out of manifests) otherwise.
"""

from __future__ import annotations

import pytest

from clusterlink.api import NodeConfig, ObjectMeta
from clusterlink.planner import Plan, plan
from tests.unit.planner.federation import cluster, node

CLAMP = "-o {dev} -p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --clamp-mss-to-pmtu"


def route_mtus(p: Plan, name: str) -> dict[tuple[str, str], int]:
    """(dev, cidr) -> route MTU (0 = the device's)."""
    return {(r.dev, r.cidr): r.mtu for r in p.spec(name).routes}


def device_mtus(p: Plan, name: str) -> dict[str, int]:
    return {d.name: d.mtu for d in p.spec(name).devices}


def mss(p: Plan, name: str) -> set[tuple[str, str]]:
    return {(r.chain, r.rule) for r in p.spec(name).iptables if r.table == "mangle"}


def two_p2p(mtu_a: int | None, mtu_b: int | None, family: str = "ipv4") -> Plan:
    fams = {"ipv4": (4,), "ipv6": (6,), "all": (4, 6)}[family]
    return plan(
        [cluster("a", family=family), cluster("b", family=family)],
        [
            node(
                "a",
                "n",
                "192.168.1.1" if 4 in fams else "",
                "fd00:1::1" if 6 in fams else "",
                pods=tuple(c for f, c in ((4, "10.1.0.0/24"), (6, "fd10:1::/64")) if f in fams),
                mtu=mtu_a,
            ),
            node(
                "b",
                "n",
                "192.168.2.1" if 4 in fams else "",
                "fd00:2::1" if 6 in fams else "",
                pods=tuple(c for f, c in ((4, "10.2.0.0/24"), (6, "fd10:2::/64")) if f in fams),
                mtu=mtu_b,
            ),
        ],
    )


@pytest.mark.parametrize(
    ("mtu_a", "mtu_b", "family", "a_routes", "b_routes", "a_devices", "b_devices"),
    [
        # same underlay: every route at the device MTU
        (None, None, "ipv4", {"10.2.0.0/24": 0}, {"10.1.0.0/24": 0}, 1450, 1450),
        (1400, 1400, "ipv4", {"10.2.0.0/24": 0}, {"10.1.0.0/24": 0}, 1350, 1350),
        # on-premises 1500 joined to a 1400 cloud: both directions end at 1350
        (1500, 1400, "ipv4", {"10.2.0.0/24": 1350}, {"10.1.0.0/24": 0}, 1450, 1350),
        (1400, 1500, "ipv4", {"10.2.0.0/24": 0}, {"10.1.0.0/24": 1350}, 1350, 1450),
        # an IPv6 underlay costs 20 bytes more
        (1500, 1400, "ipv6", {"fd10:2::/64": 1330}, {"fd10:1::/64": 0}, 1430, 1330),
        (9000, 1500, "ipv6", {"fd10:2::/64": 1430}, {"fd10:1::/64": 0}, 8930, 1430),
    ],
)
def test_p2p_path_mtu(
    mtu_a: int | None,
    mtu_b: int | None,
    family: str,
    a_routes: dict[str, int],
    b_routes: dict[str, int],
    a_devices: int,
    b_devices: int,
) -> None:
    p = two_p2p(mtu_a, mtu_b, family)
    dev = "vx-bridge-6" if family == "ipv6" else "vx-bridge"
    assert route_mtus(p, "a-n") == {(dev, c): m for c, m in a_routes.items()}
    assert route_mtus(p, "b-n") == {(dev, c): m for c, m in b_routes.items()}
    assert device_mtus(p, "a-n") == {dev: a_devices}
    assert device_mtus(p, "b-n") == {dev: b_devices}


def test_dual_stack_caps_each_family_by_its_own_overhead() -> None:
    p = two_p2p(1500, 1400, "all")
    assert route_mtus(p, "a-n") == {
        ("vx-bridge", "10.2.0.0/24"): 1350,
        ("vx-bridge-6", "fd10:2::/64"): 1330,
    }
    assert set(route_mtus(p, "b-n").values()) == {0}


def gateway_federation(gw: int, internal: int, remote: int, remote_mode: str = "p2p") -> Plan:
    """Cluster a in gateway mode (gateway a-g, internal a-i), dual-stack, joined to b."""
    return plan(
        [
            cluster("a", "gateway", "all", pods=("10.1.0.0/16", "fd10:1::/48")),
            cluster("b", remote_mode, "all", pods=("10.2.0.0/16", "fd10:2::/48")),
        ],
        [
            node("a", "g", "192.168.1.1", "fd00:1::1", gateway=True, mtu=gw),
            node("a", "i", "192.168.1.2", "fd00:1::2", mtu=internal),
            node(
                "b",
                "g",
                "192.168.2.1",
                "fd00:2::1",
                gateway=True,
                pods=("10.2.1.0/24", "fd10:2:1::/64"),
                mtu=remote,
            ),
        ],
    )


@pytest.mark.parametrize("remote_mode", ["p2p", "gateway"])
@pytest.mark.parametrize(
    ("gw", "internal", "remote", "internal_v4", "gateway_v4", "remote_v4"),
    [
        # (underlay MTUs) -> route MTU over IPv4 on the internal node (via vx-local), on the
        # gateway and on the remote node; IPv6 is 20 lower wherever it is capped
        (1500, 1500, 1500, 0, 0, 0),
        (1500, 1500, 1400, 1350, 1350, 0),  # the remote is the smallest: whole path at 1350
        (1400, 1500, 1500, 1350, 0, 1350),  # the gateway is: the internal node's path too
        (1500, 1400, 1500, 0, 0, 0),  # the internal node is: its device MTU already fits
        (1500, 1450, 1400, 1350, 1350, 0),
        (9000, 1500, 1400, 1350, 1350, 0),
    ],
)
def test_gateway_path_mtu_is_the_minimum_over_the_whole_path(
    remote_mode: str,
    gw: int,
    internal: int,
    remote: int,
    internal_v4: int,
    gateway_v4: int,
    remote_v4: int,
) -> None:
    p = gateway_federation(gw, internal, remote, remote_mode)

    def v6(m: int) -> int:
        return m - 20 if m else 0

    internal_routes = route_mtus(p, "a-i")
    assert {k[0] for k in internal_routes} == {"vx-local", "vx-local-6"}
    for (dev, _cidr), m in internal_routes.items():
        assert m == (v6(internal_v4) if dev.endswith("-6") else internal_v4), (dev, m)
    for (dev, _cidr), m in route_mtus(p, "a-g").items():
        assert m == (v6(gateway_v4) if dev.endswith("-6") else gateway_v4), (dev, m)
    for (dev, _cidr), m in route_mtus(p, "b-g").items():
        assert m == (v6(remote_v4) if dev.endswith("-6") else remote_v4), (dev, m)
    # never above the device: a route MTU only ever lowers it
    for name in p.names:
        devs = device_mtus(p, name)
        assert all(r.mtu < devs[r.dev] for r in p.spec(name).routes if r.mtu), name


def test_advertiser_below_the_gateway_caps_only_its_own_cidrs() -> None:
    """Internal node at 1500 behind a 1500 gateway: toward a 1300 P2P node 1250, toward a 1500
    P2P node of the same cluster the device MTU."""
    p = plan(
        [cluster("a", "gateway", pods=("10.1.0.0/16",)), cluster("b")],
        [
            node("a", "g", "192.168.1.1", gateway=True),
            node("a", "i", "192.168.1.2"),
            node("b", "small", "192.168.2.1", pods=("10.2.1.0/24",), mtu=1300),
            node("b", "big", "192.168.2.2", pods=("10.2.2.0/24",), mtu=1500),
        ],
    )
    assert route_mtus(p, "a-i") == {
        ("vx-local", "10.2.1.0/24"): 1250,
        ("vx-local", "10.2.2.0/24"): 0,
    }
    assert route_mtus(p, "a-g") == {
        ("vx-bridge", "10.2.1.0/24"): 1250,
        ("vx-bridge", "10.2.2.0/24"): 0,
    }
    assert set(route_mtus(p, "b-small").values()) == set(route_mtus(p, "b-big").values()) == {0}


def test_route_mtu_is_left_out_of_manifests_when_it_is_the_devices() -> None:
    p = two_p2p(1500, 1400)
    capped = p.spec("a-n").model_dump(mode="json", by_alias=True)["routes"]
    plain = p.spec("b-n").model_dump(mode="json", by_alias=True)["routes"]
    assert capped == [{"cidr": "10.2.0.0/24", "gw": "220.168.2.1", "dev": "vx-bridge", "mtu": 1350}]
    assert plain == [{"cidr": "10.1.0.0/24", "gw": "220.168.1.1", "dev": "vx-bridge"}]
    # a Kosmos route (no mtu) loads, and ours round-trips
    for spec in (p.spec("a-n"), p.spec("b-n")):
        obj = NodeConfig(metadata=ObjectMeta(name="x"), spec=spec)
        assert NodeConfig.model_validate(obj.to_dict()).spec.routes == spec.routes


def test_a_node_mtu_change_rewrites_exactly_the_nodeconfigs_it_affects() -> None:
    before = gateway_federation(1500, 1500, 1500)
    after = gateway_federation(1500, 1500, 1400)
    # the remote's own devices, and every route toward it (gateway, internal node)
    assert after.changed_since(before).changed == ["a-g", "a-i", "b-g"]
    again = gateway_federation(1500, 1500, 9000)  # bigger than everyone: only its own devices
    assert again.changed_since(before).changed == ["b-g"]


def test_mss_clamp_on_every_device_of_the_nodes_that_encapsulate() -> None:
    p = gateway_federation(1500, 1500, 1400)
    for name, devs in (
        ("a-g", {"vx-bridge", "vx-bridge-6", "vx-local", "vx-local-6"}),
        ("a-i", {"vx-local", "vx-local-6"}),  # never on a device it does not own
        ("b-g", {"vx-bridge", "vx-bridge-6"}),
    ):
        assert mss(p, name) == {
            (chain, CLAMP.format(dev=dev)) for chain in ("FORWARD", "OUTPUT") for dev in devs
        }, name


def test_no_clamp_where_nothing_is_planned() -> None:
    """A node left out (no interface yet) gets no NodeConfig, hence no rules; a disabled
    cluster's nodes neither."""
    p = plan(
        [cluster("a"), cluster("b", enable=False)],
        [node("a", "n", "192.168.1.1", pods=("10.1.0.0/24",)), node("b", "n", "192.168.2.1")],
    )
    assert p.names == ["a-n"]
    assert mss(p, "a-n") == {(c, CLAMP.format(dev="vx-bridge")) for c in ("FORWARD", "OUTPUT")}
