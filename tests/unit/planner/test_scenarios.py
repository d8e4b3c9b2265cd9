"""Table-driven planner scenarios: topology in, exact NodeConfig entries out."""

from __future__ import annotations

import json
import random

import pytest

from clusterlink.api import Cluster, ClusterNode
from clusterlink.planner import Plan, plan
from clusterlink.planner.addressing import derive_address, device_mac
from tests.unit.planner.federation import cluster, node, walk


def routes(p: Plan, name: str) -> list[tuple[str, str, str]]:
    return [(r.cidr, r.gw, r.dev) for r in p.spec(name).routes]


def fdbs(p: Plan, name: str) -> list[tuple[str, str, str]]:
    return [(f.ip, f.mac, f.dev) for f in p.spec(name).fdbs]


def arps(p: Plan, name: str) -> list[tuple[str, str, str]]:
    return [(a.ip, a.mac, a.dev) for a in p.spec(name).arps]


def devices(p: Plan, name: str) -> dict[str, str]:
    return {d.name: d.addr for d in p.spec(name).devices}


def rules(p: Plan, name: str) -> list[tuple[str, str]]:
    """NAT rules (the MSS clamp in mangle is checked in test_mtu.py)."""
    return [(r.chain, r.rule) for r in p.spec(name).iptables if r.table == "nat"]


def messages(p: Plan) -> list[str]:
    return [f"{f.object}: {f.message}" for f in p.findings]


def mac(cluster_name: str, node_name: str, dev: str) -> str:
    return device_mac(cluster_name, node_name, dev)


Z = "00:00:00:00:00:00"


def worked_example() -> tuple[list[Cluster], list[ClusterNode]]:
    """reference/kosmos-clusterlink.md §3.9: c1 gateway mode, c2 P2P, IPv4."""
    clusters = [
        cluster("c1", "gateway", pods=("10.233.64.0/18",), services=("10.233.0.0/18",)),
        cluster("c2", "p2p", pods=("10.234.64.0/18",), services=("10.234.0.0/18",)),
    ]
    nodes = [
        node("c1", "a1", "192.168.1.11", gateway=True),
        node("c1", "a2", "192.168.1.12"),
        node("c2", "b1", "192.168.2.21", gateway=True, pods=("10.234.70.0/26",)),
        node("c2", "b2", "192.168.2.22", pods=("10.234.80.0/26",)),
    ]
    return clusters, nodes


def test_worked_example_exactly() -> None:
    p = plan(*worked_example())
    assert p.names == ["c1-a1", "c1-a2", "c2-b1", "c2-b2"]
    assert p.findings == []
    a1_local, a1_bridge = mac("c1", "a1", "vx-local"), mac("c1", "a1", "vx-bridge")
    a2_local = mac("c1", "a2", "vx-local")
    b1, b2 = mac("c2", "b1", "vx-bridge"), mac("c2", "b2", "vx-bridge")

    assert devices(p, "c1-a1") == {"vx-bridge": "220.168.1.11/8", "vx-local": "210.168.1.11/8"}
    assert routes(p, "c1-a1") == [
        ("10.234.0.0/18", "220.168.2.21", "vx-bridge"),
        ("10.234.70.0/26", "220.168.2.21", "vx-bridge"),
        ("10.234.80.0/26", "220.168.2.22", "vx-bridge"),
    ]
    # No zero-MAC flood entries on the bridge mesh (see planner/l2.py); vx-local keeps them.
    assert fdbs(p, "c1-a1") == [
        ("192.168.2.21", b1, "vx-bridge"),
        ("192.168.2.22", b2, "vx-bridge"),
        ("192.168.1.12", Z, "vx-local"),
        ("192.168.1.12", a2_local, "vx-local"),
    ]
    assert arps(p, "c1-a1") == [
        ("220.168.2.21", b1, "vx-bridge"),
        ("220.168.2.22", b2, "vx-bridge"),
        ("210.168.1.12", a2_local, "vx-local"),
    ]
    assert rules(p, "c1-a1") == [
        ("POSTROUTING", "-s 210.0.0.0/8 -o vx-bridge -j MASQUERADE"),
        ("POSTROUTING", "-s 220.0.0.0/8 -j MASQUERADE"),
    ]

    assert devices(p, "c1-a2") == {"vx-local": "210.168.1.12/8"}
    assert routes(p, "c1-a2") == [
        ("10.234.0.0/18", "210.168.1.11", "vx-local"),
        ("10.234.70.0/26", "210.168.1.11", "vx-local"),
        ("10.234.80.0/26", "210.168.1.11", "vx-local"),
    ]
    assert fdbs(p, "c1-a2") == [
        ("192.168.1.11", Z, "vx-local"),
        ("192.168.1.11", a1_local, "vx-local"),
    ]
    assert arps(p, "c1-a2") == [("210.168.1.11", a1_local, "vx-local")]
    assert rules(p, "c1-a2") == []

    for b in ("c2-b1", "c2-b2"):
        assert routes(p, b) == [
            ("10.233.0.0/18", "220.168.1.11", "vx-bridge"),
            ("10.233.64.0/18", "220.168.1.11", "vx-bridge"),
        ]
        # Only toward a1: no same-cluster mesh between b1 and b2 (Kosmos adds one; no route uses it).
        assert fdbs(p, b) == [("192.168.1.11", a1_bridge, "vx-bridge")]
        assert arps(p, b) == [("220.168.1.11", a1_bridge, "vx-bridge")]
    # The P2P cluster's gateway is its service node: remote Service traffic is marked and
    # masqueraded toward backends on other nodes, so replies come back through it.
    assert rules(p, "c2-b1") == [
        ("POSTROUTING", "! -d 10.234.70.0/26 -m mark --mark 0x10/0x10 -j MASQUERADE"),
        ("PREROUTING", "-d 10.234.0.0/18 -i vx-bridge -j MARK --set-xmark 0x10/0x10"),
    ]
    assert rules(p, "c2-b2") == []
    assert devices(p, "c2-b1") == {"vx-bridge": "220.168.2.21/8"}


def test_p2p_to_p2p() -> None:
    p = plan(
        [cluster("a", pods=("10.1.0.0/16",)), cluster("b", pods=("10.2.0.0/16",))],
        [
            node("a", "n1", "192.168.1.1", pods=("10.1.1.0/24",)),
            node("a", "n2", "192.168.1.2", pods=("10.1.2.0/24",)),
            node("b", "n1", "192.168.2.1", pods=("10.2.1.0/24",)),
        ],
    )
    assert routes(p, "a-n1") == routes(p, "a-n2") == [("10.2.1.0/24", "220.168.2.1", "vx-bridge")]
    assert routes(p, "b-n1") == [
        ("10.1.1.0/24", "220.168.1.1", "vx-bridge"),
        ("10.1.2.0/24", "220.168.1.2", "vx-bridge"),
    ]
    assert len(fdbs(p, "b-n1")) == 2 and len(arps(p, "b-n1")) == 2
    assert all(not rules(p, n) for n in p.names)
    assert [h.to for h in walk(p, dict(p.node_configs()), "b-n1", "10.1.2.7")] == ["a-n2"]
    assert "no node has role gateway" not in " ".join(messages(p))  # no services to advertise


def test_gateway_to_gateway() -> None:
    p = plan(
        [
            cluster("a", "gateway", pods=("10.1.0.0/16",), services=("10.96.0.0/16",)),
            cluster("b", "gateway", pods=("10.2.0.0/16",), services=("10.97.0.0/16",)),
        ],
        [
            node("a", "g", "192.168.1.1", gateway=True),
            node("a", "i", "192.168.1.2"),
            node("b", "g", "192.168.2.1", gateway=True),
            node("b", "i", "192.168.2.2"),
        ],
    )
    assert routes(p, "a-g") == [
        ("10.2.0.0/16", "220.168.2.1", "vx-bridge"),
        ("10.97.0.0/16", "220.168.2.1", "vx-bridge"),
    ]
    assert routes(p, "a-i") == [
        ("10.2.0.0/16", "210.168.1.1", "vx-local"),
        ("10.97.0.0/16", "210.168.1.1", "vx-local"),
    ]
    assert len(rules(p, "b-g")) == 2 and rules(p, "b-i") == []
    specs = dict(p.node_configs())
    assert [h.to for h in walk(p, specs, "a-i", "10.2.3.4")] == ["a-g", "b-g"]
    assert [h.to for h in walk(p, specs, "b-g", "10.1.3.4")] == ["a-g"]  # then a's CNI delivers


def test_three_clusters_mixed() -> None:
    p = plan(
        [
            cluster("a", "gateway", pods=("10.1.0.0/16",)),
            cluster("b", "p2p", pods=("10.2.0.0/16",)),
            cluster("c", "gateway", pods=("10.3.0.0/16",)),
        ],
        [
            node("a", "g", "192.168.1.1", gateway=True),
            node("a", "i", "192.168.1.2"),
            node("b", "n1", "192.168.2.1", pods=("10.2.1.0/24",)),
            node("b", "n2", "192.168.2.2", pods=("10.2.2.0/24",)),
            node("c", "g", "192.168.3.1", gateway=True),
        ],
    )
    assert [r[0] for r in routes(p, "a-i")] == ["10.2.1.0/24", "10.2.2.0/24", "10.3.0.0/16"]
    assert {r[1] for r in routes(p, "a-i")} == {"210.168.1.1"}
    assert routes(p, "c-g") == [
        ("10.1.0.0/16", "220.168.1.1", "vx-bridge"),
        ("10.2.1.0/24", "220.168.2.1", "vx-bridge"),
        ("10.2.2.0/24", "220.168.2.2", "vx-bridge"),
    ]
    # bridge set: a-g, b-n1, b-n2, c-g -> each sees the 2 or 3 members of other clusters
    assert len(arps(p, "c-g")) == 3 and len(arps(p, "b-n1")) == 2
    assert [h.to for h in walk(p, dict(p.node_configs()), "a-i", "10.2.2.9")] == ["a-g", "b-n2"]


@pytest.mark.parametrize("mode", ["p2p", "gateway"])
def test_single_cluster_has_no_cross_cluster_entries(mode: str) -> None:
    p = plan(
        [cluster("a", mode, pods=("10.1.0.0/16",))],
        [
            node("a", "g", "192.168.1.1", gateway=True, pods=("10.1.1.0/24",)),
            node("a", "i", "192.168.1.2"),
        ],
    )
    for name in p.names:
        spec = p.spec(name)
        assert spec.routes == []
        assert all(f.dev == "vx-local" for f in spec.fdbs)
    if mode == "p2p":
        assert all(p.spec(n).fdbs == [] for n in p.names)


def test_ipv6_only() -> None:
    p = plan(
        [
            cluster("a", family="ipv6", pods=("fd10::/48",)),
            cluster("b", "gateway", "ipv6", pods=("fd20::/48",)),
        ],
        [
            node("a", "n1", ip6="fd00:1::11", pods=("fd10:0:0:1::/64",)),
            node("b", "g", ip6="fd00:2::21", gateway=True),
        ],
    )
    a = p.spec("a-n1")
    assert [(d.name, d.addr, d.id, d.port, d.mtu) for d in a.devices] == [
        ("vx-bridge-6", "9480:1::11/16", 64, 4866, 1430)  # 1500 - 70 over an IPv6 underlay
    ]
    assert routes(p, "a-n1") == [("fd20::/48", "9480:2::21", "vx-bridge-6")]
    assert rules(p, "b-g") == [
        ("POSTROUTING", "-s 9470::/16 -o vx-bridge-6 -j MASQUERADE"),
        ("POSTROUTING", "-s 9480::/16 -j MASQUERADE"),
    ]
    assert {d.name for d in p.spec("b-g").devices} == {"vx-bridge-6", "vx-local-6"}


def test_dual_stack_and_node_missing_a_family() -> None:
    p = plan(
        [
            cluster("a", family="all", pods=("10.1.0.0/16", "fd10::/48")),
            cluster("b", "gateway", "all", pods=("10.2.0.0/16", "fd20::/48")),
        ],
        [
            node("a", "n1", "192.168.1.1", "fd00:1::1", pods=("10.1.1.0/24", "fd10:0:0:1::/64")),
            node("a", "n2", "192.168.1.2", pods=("10.1.2.0/24",)),  # no IPv6
            node("b", "g", "192.168.2.1", "fd00:2::1", gateway=True),
            node("b", "i", "192.168.2.2", "fd00:2::2"),
        ],
    )
    assert {d.name: d.mtu for d in p.spec("a-n1").devices} == {
        "vx-bridge": 1450,
        "vx-bridge-6": 1430,
    }
    assert {d.name for d in p.spec("a-n2").devices} == {"vx-bridge"}
    assert "ClusterNode/a-n2: has no IPv6 address: planned for the families it has" in messages(p)
    assert routes(p, "b-i") == [
        ("10.1.1.0/24", "210.168.2.1", "vx-local"),
        ("10.1.2.0/24", "210.168.2.1", "vx-local"),
        ("fd10:0:0:1::/64", "9470:2::1", "vx-local-6"),
    ]
    assert routes(p, "a-n2") == [("10.2.0.0/16", "220.168.2.1", "vx-bridge")]
    assert len(rules(p, "b-g")) == 4
    specs = dict(p.node_configs())
    assert [h.to for h in walk(p, specs, "b-i", "fd10::1:0:0:0:5")] == ["b-g", "a-n1"]


def test_disabled_cluster_and_unusable_nodes_are_reported() -> None:
    p = plan(
        [cluster("a", pods=("10.1.0.0/16",)), cluster("b", enable=False, pods=("10.2.0.0/16",))],
        [
            node("a", "ok", "192.168.1.1", pods=("10.1.1.0/24",)),
            node("a", "noip"),
            node("a", "noiface", "192.168.1.3", iface=""),
            node("b", "n1", "192.168.2.1", pods=("10.2.1.0/24",)),
            node("ghost", "n1", "192.168.9.1"),
        ],
    )
    assert p.names == ["a-ok"]
    assert p.spec("a-ok").routes == []
    assert messages(p) == [
        "Cluster/b: clusterLinkOptions.enable is false: not linked",
        "ClusterNode/a-noiface: spec.interfaceName is empty (not detected yet): left out",
        "ClusterNode/a-noip: no ip for ipFamily of the cluster: left out",
        "ClusterNode/b-n1: cluster b is missing or not linked: left out",
        "ClusterNode/ghost-n1: cluster ghost is missing or not linked: left out",
    ]


def test_overlapping_cidr_is_skipped_only_where_it_overlaps() -> None:
    p = plan(
        [
            cluster("a", pods=("10.1.0.0/16",)),
            cluster("b", pods=("10.1.0.0/16",)),  # same range as a
            cluster("c", pods=("10.3.0.0/16",)),
        ],
        [
            node("a", "n", "192.168.1.1", pods=("10.1.1.0/24",)),
            node("b", "n", "192.168.2.1", pods=("10.1.1.0/24",)),
            node("c", "n", "192.168.3.1", pods=("10.3.1.0/24",)),
        ],
    )
    assert [r[0] for r in routes(p, "a-n")] == ["10.3.1.0/24"]
    assert [r[0] for r in routes(p, "b-n")] == ["10.3.1.0/24"]
    # c sees 10.1.1.0/24 twice: one route only (the first by cluster name), reported.
    assert routes(p, "c-n") == [("10.1.1.0/24", "220.168.1.1", "vx-bridge")]
    found = messages(p)
    assert (
        "ClusterNode/b-n: 10.1.1.0/24 is also advertised by a-n (cluster a); only that one is routed"
        in found
    )
    assert (
        "Cluster/b: 10.1.1.0/24 of cluster a overlaps this cluster's own CIDRs: not routed here (use globalCIDRsMap)"
        in found
    )


def test_supernet_overlap_is_skipped() -> None:
    p = plan(
        [cluster("a", "gateway", pods=("10.0.0.0/8",)), cluster("b", pods=("10.2.0.0/16",))],
        [
            node("a", "g", "192.168.1.1", gateway=True),
            node("b", "n", "192.168.2.1", pods=("10.2.1.0/24",)),
        ],
    )
    assert routes(p, "a-g") == [] and routes(p, "b-n") == []


def test_global_cidrs_map() -> None:
    p = plan(
        [
            cluster("a", pods=("10.1.0.0/16",), global_map={"10.1.1.0/24": "10.201.1.0/24"}),
            cluster("b", pods=("10.1.0.0/16",)),
        ],
        [
            node("a", "n", "192.168.1.1", pods=("10.1.1.0/24",)),
            node("b", "n", "192.168.2.1", pods=("10.1.2.0/24",)),
        ],
    )
    assert routes(p, "b-n") == [("10.201.1.0/24", "220.168.1.1", "vx-bridge")]
    assert rules(p, "a-n") == [
        ("POSTROUTING", "-s 10.1.1.0/24 -o vx-bridge -j NETMAP --to 10.201.1.0/24"),
        ("PREROUTING", "-d 10.201.1.0/24 -i vx-bridge -j NETMAP --to 10.1.1.0/24"),
    ]
    assert routes(p, "a-n") == []  # b's 10.1.2.0/24 overlaps a's 10.1.0.0/16 and b has no map


def test_gateway_reelection_changes_exactly_the_expected_entries() -> None:
    clusters = [
        cluster("a", "gateway", pods=("10.1.0.0/16",)),
        cluster("b", "p2p", pods=("10.2.0.0/16",)),
        cluster("c", "p2p", pods=("10.3.0.0/16",)),
    ]
    base = [
        node("b", "n1", "192.168.2.1", pods=("10.2.1.0/24",)),
        node("c", "n1", "192.168.3.1", pods=("10.3.1.0/24",)),
    ]
    before = plan(
        clusters,
        [
            node("a", "g1", "192.168.1.1", gateway=True),
            node("a", "g2", "192.168.1.2"),
            node("a", "i", "192.168.1.3"),
            *base,
        ],
    )
    after = plan(
        clusters,
        [
            node("a", "g1", "192.168.1.1"),
            node("a", "g2", "192.168.1.2", gateway=True),
            node("a", "i", "192.168.1.3"),
            *base,
        ],
    )
    diff = after.changed_since(before)
    assert diff.changed == ["a-g1", "a-g2", "a-i", "b-n1", "c-n1"] and diff.removed == []
    assert routes(after, "b-n1") == [
        ("10.1.0.0/16", "220.168.1.2", "vx-bridge"),
        ("10.3.1.0/24", "220.168.3.1", "vx-bridge"),
    ]
    assert routes(after, "a-i")[0] == ("10.2.1.0/24", "210.168.1.2", "vx-local")
    assert {d.name for d in after.spec("a-g1").devices} == {"vx-local"}
    assert rules(after, "a-g1") == [] and len(rules(after, "a-g2")) == 2
    # MACs are derived, not drawn: the new gateway's vx-bridge MAC is stable.
    assert after.spec("a-g2").devices[0].mac == mac("a", "g2", "vx-bridge")
    # A new pod block in c changes every other node (their routes), not c-n1 itself.
    moved = plan(
        clusters,
        [
            node("a", "g1", "192.168.1.1", gateway=True),
            node("a", "g2", "192.168.1.2"),
            node("a", "i", "192.168.1.3"),
            base[0],
            node("c", "n1", "192.168.3.1", pods=("10.3.9.0/24",)),
        ],
    )
    assert moved.changed_since(before).changed == ["a-g1", "a-g2", "a-i", "b-n1"]


def test_vx_address_collision_is_resolved_and_reported() -> None:
    # 10.0.1.5 and 192.0.1.5 share their low 24 bits: both derive 220.0.1.5/8.
    p = plan(
        [cluster("a", pods=("10.1.0.0/16",)), cluster("b", pods=("10.2.0.0/16",))],
        [
            node("a", "n", "10.0.1.5", pods=("10.1.1.0/24",)),
            node("b", "n", "192.0.1.5", pods=("10.2.1.0/24",)),
        ],
    )
    assert str(derive_address("220.0.0.0/8", "192.0.1.5")) == "220.0.1.5/8"
    assert devices(p, "a-n") == {"vx-bridge": "220.0.1.5/8"}
    assert devices(p, "b-n") == {"vx-bridge": "220.0.1.6/8"}
    assert (
        "ClusterNode/b-n: vx-bridge address 220.0.1.5 is also derived for a-n; using 220.0.1.6 instead"
        in messages(p)
    )
    assert routes(p, "a-n") == [("10.2.1.0/24", "220.0.1.6", "vx-bridge")]
    assert [h.to for h in walk(p, dict(p.node_configs()), "a-n", "10.2.1.1")] == ["b-n"]


def test_several_gateways_first_wins() -> None:
    p = plan(
        [cluster("a", "gateway", pods=("10.1.0.0/16",))],
        [node("a", "x", "192.168.1.1", gateway=True), node("a", "y", "192.168.1.2", gateway=True)],
    )
    assert "vx-bridge" in devices(p, "a-x") and "vx-bridge" not in devices(p, "a-y")
    assert "Cluster/a: 2 nodes have role gateway (a-x, a-y); using a-x" in messages(p)


def test_gateway_cluster_without_gateway() -> None:
    p = plan(
        [cluster("a", "gateway", pods=("10.1.0.0/16",)), cluster("b", pods=("10.2.0.0/16",))],
        [node("a", "i", "192.168.1.1"), node("b", "n", "192.168.2.1", pods=("10.2.1.0/24",))],
    )
    assert routes(p, "a-i") == [] and routes(p, "b-n") == []
    assert (
        "Cluster/a: gateway mode but no node has role gateway: the cluster is not connected"
        in messages(p)
    )


def test_mtu_follows_underlay() -> None:
    p = plan([cluster("a", family="all")], [node("a", "n", "192.168.1.1", "fd00::1", mtu=9000)])
    assert {d.name: d.mtu for d in p.spec("a-n").devices} == {
        "vx-bridge": 8950,
        "vx-bridge-6": 8930,
    }


def test_macs_are_unicast_locally_administered_and_stable() -> None:
    m = mac("c", "n", "vx-bridge")
    first = int(m.split(":")[0], 16)
    assert first & 0x01 == 0 and first & 0x02 == 2
    assert m == mac("c", "n", "vx-bridge") != mac("c", "n", "vx-local")


def test_output_is_byte_identical_whatever_the_input_order() -> None:
    clusters, nodes = worked_example()

    def dump(p: Plan) -> str:
        return json.dumps(
            {n: s.model_dump(mode="json", by_alias=True) for n, s in p.node_configs()}
            | {"findings": [f.to_dict() for f in p.findings]}
        )

    expected = dump(plan(clusters, nodes))
    rng = random.Random(7)
    for _ in range(5):
        rng.shuffle(clusters)
        rng.shuffle(nodes)
        assert dump(plan(clusters, nodes)) == expected
