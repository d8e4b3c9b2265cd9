"""Direct routing: which routes go straight over the NIC, and which stay on VXLAN."""

from __future__ import annotations

import pytest

from clusterlink.api import Cluster, ClusterNode
from clusterlink.planner import plan
from tests.unit.planner.federation import cluster, node

ON_LINK = ("192.168.0.0/16", "fd00::/16")


def fed(
    a_direct: bool = True,
    b_direct: bool = True,
    b_on_link: tuple[str, ...] = ON_LINK,
    a_on_link: tuple[str, ...] = ON_LINK,
    b_mode: str = "p2p",
    b_map: dict[str, str] | None = None,
    a_cni: str = "calico",
    b_mtu: int | None = None,
) -> tuple[list[Cluster], list[ClusterNode]]:
    clusters = [
        cluster("a", family="all", direct=a_direct, pods=("10.1.0.0/16", "fd10:1::/48"), cni=a_cni),
        cluster(
            "b",
            b_mode,
            family="all",
            direct=b_direct,
            pods=("10.2.0.0/16", "fd10:2::/48"),
            services=("10.102.0.0/16",),
            global_map=b_map,
        ),
    ]
    nodes = [
        node("a", "n1", "192.168.1.1", "fd00:1::1", pods=("10.1.1.0/24", "fd10:1:1::/64"), on_link=a_on_link),
        node("b", "n1", "192.168.2.1", "fd00:2::1", gateway=True, pods=("10.2.1.0/24", "fd10:2:1::/64"), on_link=b_on_link, mtu=b_mtu),
        node("b", "n2", "192.168.2.2", "fd00:2::2", pods=("10.2.2.0/24", "fd10:2:2::/64"), on_link=b_on_link, mtu=b_mtu),
    ]  # fmt: skip
    return clusters, nodes


def routes(p: object, name: str) -> dict[str, tuple[str, str, int]]:
    return {r.cidr: (r.dev, r.gw, r.mtu) for r in p.spec(name).routes}  # type: ignore[attr-defined]


def test_both_opted_in_and_on_link_pod_blocks_go_direct_in_both_families() -> None:
    p = plan(*fed())
    assert routes(p, "a-n1") == {
        "10.2.1.0/24": ("eth0", "192.168.2.1", 0),
        "10.2.2.0/24": ("eth0", "192.168.2.2", 0),
        "10.102.0.0/16": ("vx-bridge", "220.168.2.1", 0),  # Services: at the service node, by VXLAN
        "fd10:2:1::/64": ("eth0", "fd00:2::1", 0),
        "fd10:2:2::/64": ("eth0", "fd00:2::2", 0),
    }
    assert routes(p, "b-n2") == {
        "10.1.1.0/24": ("eth0", "192.168.1.1", 0),
        "fd10:1:1::/64": ("eth0", "fd00:1::1", 0),
    }
    # the tunnel stays ready: L2 entries toward the peers are kept
    assert {f.ip for f in p.spec("a-n1").fdbs} == {"192.168.2.1", "192.168.2.2", "fd00:2::1", "fd00:2::2"}  # fmt: skip
    assert not p.findings


@pytest.mark.parametrize(
    "change, a_n1_direct",
    [
        ({"b_direct": False}, False),  # mixed: one end not opted in
        ({"a_direct": False}, False),
        ({"a_on_link": ("192.168.1.0/24", "fd00:1::/64")}, False),  # peers behind a gateway
        ({"a_on_link": ("192.168.2.2/32",)}, "10.2.2.0/24"),  # only that peer, IPv4 only
        ({"b_on_link": ()}, True),  # each end decides for itself: b tunnels, a does not
    ],
    ids=["peer-not-opted-in", "self-not-opted-in", "not-on-link", "one-peer", "asymmetric"],
)
def test_fallback_to_vxlan(change: dict[str, object], a_n1_direct: object) -> None:
    p = plan(*fed(**change))  # type: ignore[arg-type]
    direct = sorted(c for c, (dev, _, _) in routes(p, "a-n1").items() if dev == "eth0")
    if a_n1_direct is True:
        assert len(direct) == 4
    elif a_n1_direct is False:
        assert direct == []
    else:
        assert direct == [a_n1_direct]
    vx = {c for c, (dev, _, _) in routes(p, "a-n1").items() if dev.startswith("vx-")}
    assert len(vx) + len(direct) == 5  # every CIDR routed once, one way or the other
    if "b_on_link" in change:
        assert all(dev.startswith("vx-") for dev, _, _ in routes(p, "b-n1").values())


@pytest.mark.parametrize(
    "change, finding",
    [
        ({"b_mode": "gateway"}, "gateway mode"),
        ({"b_map": {"10.2.0.0/16": "10.12.0.0/16"}}, "globalCIDRsMap"),
    ],
)
def test_clusters_whose_rules_key_on_vx_bridge_keep_vxlan(
    change: dict[str, object], finding: str
) -> None:
    p = plan(*fed(**change))  # type: ignore[arg-type]
    assert all(r.dev.startswith("vx-") for r in p.spec("a-n1").routes)
    assert any(finding in f.message and f.object == "Cluster/b" for f in p.findings)


def test_smaller_peer_underlay_caps_the_direct_route_without_tunnel_overhead() -> None:
    p = plan(*fed(b_mtu=1400))
    assert routes(p, "a-n1")["10.2.1.0/24"] == ("eth0", "192.168.2.1", 1400)
    assert routes(p, "b-n1")["10.1.1.0/24"] == ("eth0", "192.168.1.1", 0)  # own MTU is smaller


def test_a_masquerading_cni_gets_exemptions_for_direct_blocks_only() -> None:
    p = plan(*fed(a_cni="flannel"))
    rules = {r.rule for r in p.spec("a-n1").iptables if r.chain == "POSTROUTING"}
    assert rules == {
        "-s 10.1.0.0/16 -o vx-bridge -j ACCEPT",
        "-s fd10:1::/48 -o vx-bridge-6 -j ACCEPT",
        "-s 10.1.0.0/16 -d 10.2.1.0/24 -o eth0 -j ACCEPT",
        "-s 10.1.0.0/16 -d 10.2.2.0/24 -o eth0 -j ACCEPT",
        "-s fd10:1::/48 -d fd10:2:1::/64 -o eth0 -j ACCEPT",
        "-s fd10:1::/48 -d fd10:2:2::/64 -o eth0 -j ACCEPT",
    }


def test_routes_stay_sorted_by_device_with_direct_ones_among_them() -> None:
    p = plan(*fed())
    devs = [r.dev for r in p.spec("a-n1").routes]
    assert devs == sorted(devs)


def test_toggling_the_option_changes_exactly_the_opted_in_nodes() -> None:
    before, after = plan(*fed(b_direct=False)), plan(*fed())
    assert after.changed_since(before).changed == ["a-n1", "b-n1", "b-n2"]
    same_peer = plan(*fed(b_on_link=("192.168.0.0/16", "fd00::/16", "10.99.0.0/16")))
    assert same_peer.changed_since(after).changed == []  # a prefix no peer is in: no change
