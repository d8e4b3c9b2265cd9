"""Planner invariants over random federations (hypothesis)."""

from __future__ import annotations

import ipaddress
import json
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clusterlink.api import Cluster, ClusterNode
from clusterlink.api.net import cidr_sort_key, ip_sort_key
from clusterlink.planner import Plan, plan
from clusterlink.planner.encryption import link_kind
from tests.unit.planner.federation import WalkError, cluster, node, walk, wg_key

Federation = tuple[list[Cluster], list[ClusterNode]]
# What agents may report as on-link (directRouting): every peer, one cluster's, IPv4 only
ON_LINK = [
    (),
    ("100.0.0.0/6", "2001:db8::/32"),
    ("101.0.0.0/8", "2001:db8:1::/48"),
    ("100.0.0.0/6",),
]


@st.composite
def federations(draw: st.DrawFn) -> Federation:
    clusters: list[Cluster] = []
    nodes: list[ClusterNode] = []
    for ci in range(draw(st.integers(1, 4))):
        name = f"c{ci}"
        mode = draw(st.sampled_from(["p2p", "gateway"]))
        family = draw(st.sampled_from(["ipv4", "ipv6", "all"]))
        fams = {"ipv4": (4,), "ipv6": (6,), "all": (4, 6)}[family]
        pods = tuple(
            p for f, p in ((4, f"10.{ci}.0.0/16"), (6, f"fd{ci + 10:02x}::/48")) if f in fams
        )
        services = ()
        if draw(st.booleans()):
            services = tuple(
                s
                for f, s in ((4, f"10.{100 + ci}.0.0/16"), (6, f"fd{ci + 10:02x}:ffff::/112"))
                if f in fams
            )
        encryption = "wireguard" if draw(st.integers(0, 2)) == 0 else "none"
        direct = draw(st.integers(0, 2)) > 0
        clusters.append(
            cluster(
                name,
                mode,
                family,
                pods=pods,
                services=services,
                encryption=encryption,
                allow_plaintext=draw(st.booleans()),
                direct=direct,
            )
        )
        count = draw(st.integers(1, 4))
        mtu = draw(st.sampled_from([None, 1400, 1500, 9000]))  # underlays differ per cluster
        gateway = (
            draw(st.one_of(st.none(), st.integers(0, count - 1)))
            if draw(st.integers(0, 9)) == 0
            else 0
        )
        for ni in range(count):
            k = draw(st.integers(1, 2))  # low bits shared across clusters -> vx address collisions
            ip = f"{100 + ci}.0.{ni}.{k}" if 4 in fams else ""
            ip6 = f"2001:db8:{ci}::{ni + 1}" if 6 in fams else ""
            if family == "all" and draw(st.integers(0, 5)) == 0:
                ip6 = ""  # a dual-stack cluster's node without IPv6
            blocks = tuple(
                b
                for f, b in ((4, f"10.{ci}.{ni}.0/24"), (6, f"fd{ci + 10:02x}:0:{ni}::/64"))
                if f in fams
            )
            if draw(st.integers(0, 7)) == 0:
                mtu = draw(st.sampled_from([1300, 1450]))  # and now and then per node
            key = wg_key(f"{name}-{ni}") if draw(st.integers(0, 9)) else ""  # not started yet
            on_link = draw(st.sampled_from([ON_LINK[1], *ON_LINK]))  # mostly every peer
            nodes.append(
                node(
                    name,
                    f"n{ni}",
                    ip,
                    ip6,
                    gateway=(gateway == ni),
                    pods=blocks,
                    mtu=mtu,
                    key=key,
                    on_link=on_link,
                )
            )
    return clusters, nodes


def dump(p: Plan) -> str:
    return json.dumps(
        {n: s.model_dump(mode="json", by_alias=True) for n, s in p.node_configs()}
        | {"findings": [f.to_dict() for f in p.findings]},
        sort_keys=True,
    )


SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(federations(), st.randoms(use_true_random=False))
def test_deterministic(fed: Federation, rnd: random.Random) -> None:
    clusters, nodes = fed
    first = dump(plan(clusters, nodes))
    rnd.shuffle(clusters)
    rnd.shuffle(nodes)
    assert dump(plan(clusters, nodes)) == first


@SETTINGS
@given(federations())
def test_lists_sorted_and_pod_sources_never_natted(fed: Federation) -> None:
    p = plan(*fed)
    for name, spec in p.node_configs():
        assert [d.name for d in spec.devices] == sorted(d.name for d in spec.devices)
        keys = [(r.dev, cidr_sort_key(r.cidr), r.gw) for r in spec.routes]
        assert keys == sorted(keys), name
        assert len({(r.dev, r.cidr) for r in spec.routes}) == len(spec.routes), (
            f"{name}: duplicate route"
        )
        fkeys = [(f.dev, ip_sort_key(f.ip), f.mac) for f in spec.fdbs]
        assert fkeys == sorted(fkeys) and len(set(fkeys)) == len(fkeys), name
        akeys = [(a.dev, ip_sort_key(a.ip)) for a in spec.arps]
        assert akeys == sorted(akeys) and len(set(akeys)) == len(akeys), name
        for rule in spec.iptables:
            source = rule.rule.split()[1] if rule.rule.startswith("-s ") else None
            if source is not None:
                assert source in {"220.0.0.0/8", "210.0.0.0/8", "9480::/16", "9470::/16"}, rule


@SETTINGS
@given(federations())
def test_every_route_resolves_to_a_device_of_a_peer(fed: Federation) -> None:
    """Each route's gateway is a vx address of a node that this node's neighbour and FDB
    entries resolve (walk raises, naming the hop, otherwise)."""
    p = plan(*fed)
    specs = dict(p.node_configs())
    for name, spec in specs.items():
        for route in spec.routes:
            target = str(ipaddress.ip_network(route.cidr).network_address + 1)
            try:
                walk(p, specs, name, target)
            except WalkError as exc:
                # a path over WireGuard toward a node without a key yet ends at a wg device
                # without that peer: the walk says so, and only then
                assert "peer allows" in str(exc), exc


def _keyed(p: Plan, src: str, owner: str | None) -> bool:
    """Every WireGuard hop from src's cluster to owner's has a public key at both ends."""
    topo = p.topology
    ends = [src, owner] if owner else [src]
    for name in list(ends):
        gateway = topo.gateway.get(topo.nodes[name].cluster)
        if gateway is not None:
            ends.append(gateway)
    return all(
        topo.nodes[n].public_key or not topo.clusters[topo.nodes[n].cluster].encrypted for n in ends
    )


def _can_send(p: Plan, name: str, family: int) -> bool:
    topo = p.topology
    view = topo.nodes[name]
    if family not in view.ips:
        return False
    if topo.in_bridge_set(view):
        return True
    gateway = topo.gateway.get(view.cluster)
    return gateway is not None and family in topo.nodes[gateway].ips


def _destinations(p: Plan, cluster_name: str, family: int) -> list[tuple[str, str | None]]:
    """(address inside an advertised pod CIDR, the node that must receive it or None = any
    node of the cluster)."""
    topo = p.topology
    view = topo.clusters[cluster_name]
    out: list[tuple[str, str | None]] = []
    if view.mode == "p2p":
        for name in topo.members[cluster_name]:
            for block in topo.nodes[name].pod_cidrs:
                net = ipaddress.ip_network(block)
                if net.version == family:
                    out.append((str(net.network_address + 1), name))
    else:
        gateway = topo.gateway.get(cluster_name)
        if gateway is not None and family in topo.nodes[gateway].ips:
            for cidr in view.pod_cidrs:
                net = ipaddress.ip_network(cidr)
                if net.version == family:
                    out.append((str(net.network_address + 1), gateway))
    return out


@SETTINGS
@given(federations())
def test_reachability_within_two_hops_with_a_return_path(fed: Federation) -> None:
    p = plan(*fed)
    specs = dict(p.node_configs())
    topo = p.topology
    for src in specs:
        c = topo.nodes[src].cluster
        for d in topo.clusters:
            if d == c:
                continue
            linked = link_kind(topo.clusters[c], topo.clusters[d]) is not None
            for family in (4, 6):
                if not _can_send(p, src, family):
                    continue
                for dst, owner in _destinations(p, d, family):
                    if not linked:  # one end asks for encryption, the other not: no route
                        assert not walk(p, specs, src, dst), f"{src} -> {dst}: refused pair"
                        continue
                    if not _keyed(p, src, owner):
                        continue  # a WireGuard end without a public key yet is not peered
                    hops = walk(p, specs, src, dst)
                    assert hops, f"{src} -> {dst} (cluster {d}): no route"
                    landed = hops[-1].to
                    assert landed == owner, (
                        f"{src} -> {dst}: landed on {landed}, expected {owner}: {hops}"
                    )
                    # Return path: from where it landed back to the source's own pod network.
                    for back, back_owner in _destinations(p, c, family):
                        if back_owner == src or (
                            topo.clusters[c].mode == "gateway"
                            and topo.in_bridge_set(topo.nodes[src])
                        ):
                            home = walk(p, specs, landed, back)
                            assert home and topo.nodes[home[-1].to].cluster == c, (
                                f"return {landed} -> {back}: {home}"
                            )


@st.composite
def federation_and_change(draw: st.DrawFn) -> tuple[Federation, Federation]:
    clusters, nodes = draw(federations())
    changed = [n.model_copy(deep=True) for n in nodes]
    victim = draw(st.integers(0, len(changed) - 1))
    what = draw(
        st.sampled_from(["gateway", "ip", "block", "remove", "iface", "mtu", "key", "onlink"])
    )
    spec = changed[victim].spec
    if what == "gateway":
        spec.roles = [] if spec.roles else ["gateway"]
    elif what == "ip" and spec.ip:
        spec.ip = spec.ip.rsplit(".", 1)[0] + ".9"
    elif what == "block" and spec.pod_cidrs:
        spec.pod_cidrs = spec.pod_cidrs[:-1]
    elif what == "remove":
        del changed[victim]
    elif what == "iface":
        spec.interface_name = "eth1"
    elif what == "mtu":
        spec.mtu = draw(st.sampled_from([1350, 1400, 1450, 1500, 9000]))
    elif what == "key":
        spec.wireguard_public_key = wg_key(f"rotated-{victim}")
    elif what == "onlink":
        spec.on_link_cidrs = list(draw(st.sampled_from(ON_LINK)))
    return (clusters, nodes), (clusters, changed)


@SETTINGS
@given(federation_and_change())
def test_fingerprint_diff_equals_full_comparison(pair: tuple[Federation, Federation]) -> None:
    before, after = plan(*pair[0]), plan(*pair[1])
    diff = after.changed_since(before)
    old = {n: s.model_dump_json() for n, s in before.node_configs()}
    new = {n: s.model_dump_json() for n, s in after.node_configs()}
    assert diff.changed == [n for n in new if old.get(n) != new[n]]
    assert diff.removed == [n for n in old if n not in new]


@SETTINGS
@given(federations())
def test_gateway_and_internal_nodes_resolve_each_other_on_vx_local(fed: Federation) -> None:
    """Host-network traffic inside a gateway-mode cluster uses the connected vx-local pool
    route, not table 200: each side needs the other's neighbour and both FDB entries (the
    gateway's side is Kosmos' issue #29)."""
    p = plan(*fed)
    specs = dict(p.node_configs())
    topo = p.topology
    checked = 0
    for cname, view in topo.clusters.items():
        gateway = topo.gateway.get(cname)
        if view.mode != "gateway" or gateway is None:
            continue
        for member in topo.members[cname]:
            if member == gateway:
                continue
            for a, b in ((gateway, member), (member, gateway)):
                for peer_dev in specs[b].devices:
                    if peer_dev.name not in {d.name for d in specs[a].devices}:
                        continue
                    family = 6 if peer_dev.name.endswith("-6") else 4
                    underlay = topo.nodes[b].ips[family]
                    ip = peer_dev.addr.split("/")[0]
                    assert any(
                        x.ip == ip and x.mac == peer_dev.mac and x.dev == peer_dev.name
                        for x in specs[a].arps
                    ), (a, b)
                    fdb = {(f.ip, f.mac) for f in specs[a].fdbs if f.dev == peer_dev.name}
                    assert {(underlay, peer_dev.mac), (underlay, "00:00:00:00:00:00")} <= fdb, (
                        a,
                        b,
                    )
                    checked += 1
    if any(
        v.mode == "gateway" and v.name in topo.gateway and len(topo.members[v.name]) > 1
        for v in topo.clusters.values()
    ):
        assert checked > 0
