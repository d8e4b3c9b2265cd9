"""Service CIDRs per mode, cluster-wide globalCIDRsMap keys in P2P, and the CNI masquerade
exemptions: exact NodeConfig entries for each case."""

from __future__ import annotations

import pytest

from clusterlink.planner import plan
from tests.unit.planner.federation import cluster, node
from tests.unit.planner.test_scenarios import messages, routes, rules

P2P_NO_GATEWAY = [
    node("b", "b1", ip="192.168.2.1", pods=("10.2.1.0/24",)),
    node("b", "b2", ip="192.168.2.2", pods=("10.2.2.0/24",)),
]
A = [node("a", "a1", ip="192.168.1.1", pods=("10.1.1.0/24",))]


def test_p2p_without_gateway_advertises_services_at_its_first_node() -> None:
    """On Kubernetes a P2P cluster runs no elector: its Service CIDRs still get a route."""
    p = plan(
        [cluster("a"), cluster("b", services=("10.102.0.0/16",))],
        A + P2P_NO_GATEWAY,
    )
    b1_bridge = p.spec("b-b1").devices[0].addr.split("/")[0]
    assert ("10.102.0.0/16", b1_bridge, "vx-bridge") in routes(p, "a-a1")
    assert (
        "Cluster/b: no node has role gateway: remote Service traffic goes to b-b1 (the first "
        "node by name)" in messages(p)
    )
    assert rules(p, "b-b1") == [
        ("POSTROUTING", "! -d 10.2.1.0/24 -m mark --mark 0x10/0x10 -j MASQUERADE"),
        ("PREROUTING", "-d 10.102.0.0/16 -i vx-bridge -j MARK --set-xmark 0x10/0x10"),
    ]
    assert rules(p, "b-b2") == []


def test_p2p_service_node_follows_the_gateway() -> None:
    nodes = [A[0], P2P_NO_GATEWAY[0], node("b", "b2", ip="192.168.2.2", gateway=True)]
    p = plan([cluster("a"), cluster("b", services=("10.102.0.0/16",))], nodes)
    assert rules(p, "b-b1") == []
    # b2 has no pod block: every marked connection is masqueraded.
    assert ("POSTROUTING", "! -d 224.0.0.0/4 -m mark --mark 0x10/0x10 -j MASQUERADE") in rules(
        p, "b-b2"
    )


def test_gateway_mode_services_need_no_masquerade() -> None:
    """Replies from internal backends return through the gateway (their route to remote
    CIDRs), so conntrack sees both directions without hiding the client."""
    p = plan(
        [
            cluster("a"),
            cluster("g", mode="gateway", pods=("10.3.0.0/16",), services=("10.103.0.0/16",)),
        ],
        [*A, node("g", "g1", ip="192.168.3.1", gateway=True), node("g", "g2", ip="192.168.3.2")],
    )
    assert not [r for _, r in rules(p, "g-g1") if "mark" in r]


def test_cluster_wide_global_key_translates_every_node_block() -> None:
    """P2P nodes advertise their blocks; a /16 key maps each /24 at its offset."""
    p = plan(
        [
            cluster("a", pods=("10.1.0.0/16",)),
            cluster("b", pods=("10.1.0.0/16",), global_map={"10.1.0.0/16": "10.11.0.0/16"}),
        ],
        [
            node("a", "a1", ip="192.168.1.1", pods=("10.1.1.0/24",)),
            node("b", "b1", ip="192.168.2.1", pods=("10.1.1.0/24",)),
            node("b", "b2", ip="192.168.2.2", pods=("10.1.2.0/24",)),
        ],
    )
    assert [r[0] for r in routes(p, "a-a1")] == ["10.11.1.0/24", "10.11.2.0/24"]
    assert ("PREROUTING", "-d 10.11.0.0/16 -i vx-bridge -j NETMAP --to 10.1.0.0/16") in rules(
        p, "b-b1"
    )


@pytest.mark.parametrize("cni", ["flannel", "Cilium"])
def test_non_calico_cnis_get_exemptions_from_their_masquerade(cni: str) -> None:
    p = plan(
        [
            cluster("a", pods=("10.1.0.0/16",), cni=cni),
            cluster("g", mode="gateway", pods=("10.3.0.0/16",), cni=cni),
        ],
        [
            *A,
            node("g", "g1", ip="192.168.3.1", gateway=True, pods=("10.3.1.0/24",)),
            node("g", "g2", ip="192.168.3.2", pods=("10.3.2.0/24",)),
        ],
    )
    assert rules(p, "a-a1") == [("POSTROUTING", "-s 10.1.0.0/16 -o vx-bridge -j ACCEPT")]
    assert sorted(rules(p, "g-g1")) == sorted(
        [
            ("POSTROUTING", "-s 10.3.0.0/16 -o vx-bridge -j ACCEPT"),
            ("POSTROUTING", "! -s 220.0.0.0/8 -m mark --mark 0x20/0x20 -j ACCEPT"),
            ("POSTROUTING", "-s 210.0.0.0/8 -o vx-bridge -j MASQUERADE"),
            ("POSTROUTING", "-s 220.0.0.0/8 -j MASQUERADE"),
            ("PREROUTING", "! -s 220.0.0.0/8 -i vx-bridge -j MARK --set-xmark 0x20/0x20"),
        ]
    )
    assert rules(p, "g-g2") == [("POSTROUTING", "-s 10.3.0.0/16 -o vx-local -j ACCEPT")]


def test_calico_exemptions_are_ippools_not_rules() -> None:
    p = plan([cluster("a", pods=("10.1.0.0/16",)), cluster("b")], [*A, P2P_NO_GATEWAY[0]])
    assert rules(p, "a-a1") == []


def test_globally_mapped_pods_are_netmapped_not_exempted() -> None:
    p = plan(
        [
            cluster(
                "a",
                pods=("10.1.0.0/16",),
                cni="flannel",
                global_map={"10.1.0.0/16": "10.11.0.0/16"},
            ),
            cluster("b"),
        ],
        [*A, P2P_NO_GATEWAY[0]],
    )
    assert rules(p, "a-a1") == [
        ("POSTROUTING", "-s 10.1.0.0/16 -o vx-bridge -j NETMAP --to 10.11.0.0/16"),
        ("PREROUTING", "-d 10.11.0.0/16 -i vx-bridge -j NETMAP --to 10.1.0.0/16"),
    ]


def test_ipv6_rules_name_their_family() -> None:
    """The agent sends a rule to ip6tables when its text has an IPv6 address or device."""
    p = plan(
        [
            cluster("a", family="all", pods=("10.1.0.0/16", "fd10:1::/48")),
            cluster(
                "g",
                mode="gateway",
                family="all",
                pods=("10.3.0.0/16", "fd10:3::/48"),
                services=("fd20:3::/108",),
                cni="flannel",
            ),
        ],
        [
            node("a", "a1", ip="192.168.1.1", ip6="fd00:1::1", pods=("10.1.1.0/24",)),
            node("g", "g1", ip="192.168.3.1", ip6="fd00:3::1", gateway=True),
            node("g", "g2", ip="192.168.3.2", ip6="fd00:3::2"),
        ],
    )
    v6 = [r for r in rules(p, "g-g1") if ":" in r[1]]
    assert ("POSTROUTING", "! -s 9480::/16 -m mark --mark 0x20/0x20 -j ACCEPT") in v6
    assert ("POSTROUTING", "-s fd10:3::/48 -o vx-bridge-6 -j ACCEPT") in v6
    assert ("PREROUTING", "! -s 9480::/16 -i vx-bridge-6 -j MARK --set-xmark 0x20/0x20") in v6


def test_global_service_cidrs_are_translated_statelessly_not_netmapped() -> None:
    """kube-proxy must see the real ClusterIP: NETMAP ahead of it would end the nat table."""
    gmap = {"10.1.0.0/16": "10.11.0.0/16", "10.101.0.0/16": "10.111.0.0/16"}
    p = plan(
        [
            cluster("a", pods=("10.1.0.0/16",), services=("10.101.0.0/16",), global_map=gmap),
            cluster("b"),
        ],
        [*A, P2P_NO_GATEWAY[0]],
    )
    spec = p.spec("a-a1")
    assert [(m.dev, m.cidr, m.global_cidr) for m in spec.address_maps] == [
        ("vx-bridge", "10.101.0.0/16", "10.111.0.0/16")
    ]
    assert not [r for _, r in rules(p, "a-a1") if "10.101.0.0/16 -o" in r or "10.111" in r]
    # the service node marks on the real CIDR: the rewrite happens before nat PREROUTING
    assert ("PREROUTING", "-d 10.101.0.0/16 -i vx-bridge -j MARK --set-xmark 0x10/0x10") in rules(
        p, "a-a1"
    )
    assert ("10.111.0.0/16", p.spec("a-a1").devices[0].addr.split("/")[0], "vx-bridge") in routes(
        p, "b-b1"
    )
