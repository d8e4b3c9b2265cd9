"""Route aggregation (planner.aggregate): covering routes plus throw routes route every
address exactly as one route per remote CIDR would - checked by longest-prefix match over
random federations, at every CIDR's edges and just outside them."""

from __future__ import annotations

import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st

from clusterlink.api import NodeConfigSpec
from clusterlink.planner import plan
from clusterlink.planner.aggregate import Aggregator
from tests.unit.planner.federation import cluster, node

Net = ipaddress.IPv4Network | ipaddress.IPv6Network


def lookup(
    table: list[tuple[Net, str]], addr: ipaddress.IPv4Address | ipaddress.IPv6Address
) -> str:
    """Longest-prefix match: the action of the most specific entry, "" for none or throw."""
    best: tuple[int, str] | None = None
    for net, action in table:
        if (
            addr.version == net.version
            and addr in net
            and (best is None or net.prefixlen > best[0])
        ):
            best = (net.prefixlen, action)
    return "" if best is None or best[1] == "throw" else best[1]


def probes(nets: list[Net]) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """Every CIDR's first and last address and the addresses just outside them."""
    out = []
    for n in nets:
        first, last = int(n.network_address), int(n.broadcast_address)
        top = 2**n.max_prefixlen - 1
        for value in (first - 1, first, last, last + 1):
            if 0 <= value <= top:
                out.append(
                    ipaddress.ip_address(value) if n.version == 4 else ipaddress.IPv6Address(value)
                )
    return out


@st.composite
def disjoint_cidrs(draw: st.DrawFn) -> list[str]:
    """Non-overlapping v4 CIDRs inside 10.0.0.0/8: often neighbours (they aggregate), some
    sizes mixed, gaps anywhere."""
    count = draw(st.integers(1, 40))
    cursor = 10 << 24
    out = []
    for _ in range(count):
        plen = draw(st.sampled_from([16, 16, 16, 18, 20, 24]))
        size = 1 << (32 - plen)
        cursor = (cursor + size - 1) // size * size  # aligned
        cursor += size * draw(st.sampled_from([0, 0, 0, 1, 3]))  # a gap, sometimes
        if cursor + size > 11 << 24:
            break
        out.append(f"{ipaddress.IPv4Address(cursor)}/{plen}")
        cursor += size
    return out


@settings(max_examples=200, deadline=None)
@given(disjoint_cidrs(), st.data())
def test_aggregated_entries_route_exactly_the_remaining_cidrs(
    cidrs: list[str], data: st.DataObject
) -> None:
    agg = Aggregator.of(cidrs)
    assert agg is not None
    removed = data.draw(st.sets(st.integers(0, len(cidrs) - 1), max_size=len(cidrs)))
    remaining = [ipaddress.ip_network(c) for i, c in enumerate(cidrs) if i not in removed]
    entries = agg.entries(removed)
    if entries is None:
        return  # not fewer than one route per CIDR: the planner keeps those
    assert len(entries) < len(remaining)
    table = [(ipaddress.ip_network(c), "throw" if throw else "gw") for c, throw in entries]
    plain = [(n, "gw") for n in remaining]
    everything = [ipaddress.ip_network(c) for c in cidrs] + [n for n, _ in table]
    for addr in probes(everything):
        assert lookup(table, addr) == lookup(plain, addr), f"{addr}: {entries}"


def test_neighbouring_cidrs_collapse_around_the_own_cluster() -> None:
    """256 /16s of one plan (10.0.0.0/8), the receiver owning 10.7.0.0/16: one covering
    route and one throw instead of 255 routes."""
    cidrs = [f"10.{i}.0.0/16" for i in range(256)]
    agg = Aggregator.of(cidrs)
    assert agg is not None
    assert agg.entries([7]) == [("10.0.0.0/8", False), ("10.7.0.0/16", True)]
    assert agg.entries([]) == [("10.0.0.0/8", False)]


def test_overlapping_or_scattered_cidrs_are_not_aggregated() -> None:
    assert Aggregator.of(["10.0.0.0/16", "10.0.1.0/24"]) is None
    scattered = Aggregator.of(["10.1.0.0/16", "172.16.0.0/16", "192.168.0.0/16"])
    assert scattered is not None and scattered.entries([]) is None


def routes_of(spec: NodeConfigSpec) -> list[tuple[Net, str]]:
    return [
        (ipaddress.ip_network(r.cidr), "throw" if r.is_throw else f"{r.gw} {r.dev}")
        for r in spec.routes
    ]


def test_internal_nodes_of_a_large_gateway_federation_hold_o1_routes() -> None:
    """200 gateway clusters with pod CIDRs from one plan: an internal node holds a handful of
    entries, not 199 routes, and every address routes as the per-CIDR table would."""
    clusters = [cluster(f"c{i}", "gateway", pods=(f"10.{i}.0.0/16",)) for i in range(200)]
    nodes = []
    for i in range(200):
        nodes.append(node(f"c{i}", "gw", f"192.168.{i}.1", gateway=True, pods=(f"10.{i}.0.0/24",)))
        nodes.append(node(f"c{i}", "in", f"192.168.{i}.2", pods=(f"10.{i}.1.0/24",)))
    p = plan(clusters, nodes)
    spec = p.spec("c5-in")
    assert len(spec.routes) <= 12, [r.cidr for r in spec.routes]
    assert any(r.is_throw and r.cidr == "10.5.0.0/16" for r in spec.routes)
    table = routes_of(spec)
    via = next(action for _, action in table if action != "throw")
    plain = [(ipaddress.ip_network(f"10.{i}.0.0/16"), via) for i in range(200) if i != 5]
    edges = [ipaddress.ip_network(f"10.{i}.0.0/16") for i in range(256)] + [n for n, _ in table]
    for addr in probes(edges):
        assert lookup(table, addr) == lookup(plain, addr), str(addr)
    # gateways keep one route per remote CIDR: they reach each over its own peer
    assert len(p.spec("c5-gw").routes) >= 199


@st.composite
def gateway_federations(draw: st.DrawFn) -> tuple[list, list]:  # type: ignore[type-arg]
    """Many clusters (gateway and P2P) with pod and service CIDRs from one plan, gaps and
    sizes random, some dual-stack."""
    count = draw(st.integers(3, 30))
    clusters, nodes = [], []
    slot = 0
    for i in range(count):
        slot += draw(st.sampled_from([1, 1, 1, 2, 5]))
        mode = draw(st.sampled_from(["gateway", "gateway", "p2p"]))
        dual = draw(st.booleans())
        plen = draw(st.sampled_from([16, 16, 20]))
        pod = f"10.{slot}.0.0/{plen}"
        svc = (f"10.{128 + slot}.0.0/16",) if draw(st.booleans()) else ()
        pods = (pod, f"fd00:{slot:x}::/48") if dual else (pod,)
        clusters.append(cluster(f"c{i}", mode, "all" if dual else "ipv4", pods=pods, services=svc))
        for j in range(2):
            node_pods = (f"10.{slot}.{j}.0/24",) + ((f"fd00:{slot:x}:0:{j}::/64",) if dual else ())
            nodes.append(node(f"c{i}", f"n{j}", f"192.168.{i}.{j + 1}", f"fd99::{i}:{j + 1}" if dual else "",
                              gateway=j == 0, pods=node_pods))  # fmt: skip
    return clusters, nodes


@settings(max_examples=60, deadline=None)
@given(gateway_federations())
def test_every_internal_node_routes_every_address_as_without_aggregation(
    fed: tuple[list, list],
) -> None:  # type: ignore[type-arg]
    clusters, nodes = fed
    aggregated = plan(clusters, nodes)
    reference = plan(clusters, nodes)
    reference.aggregate = False
    for name in aggregated.names:
        got, want = routes_of(aggregated.spec(name)), routes_of(reference.spec(name))
        if got == want:
            continue
        assert len(got) < len(want), name
        for addr in probes([n for n, _ in got + want]):
            assert lookup(got, addr) == lookup(want, addr), f"{name}: {addr}"
