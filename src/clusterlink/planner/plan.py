"""The plan: one NodeConfig per node, computed in O(nodes), materialised on demand.

Everything a bridge-set node learns about other clusters (routes, FDB and neighbour entries)
is the same for every bridge-set node of one cluster: the federation-wide, sorted lists minus
the node's own cluster and the CIDRs that overlap it. So `plan()` builds those lists once, and
`Plan.spec(name)` assembles a node's NodeConfig from them (cached per cluster). The O(N^2)
output is only produced for the NodeConfigs a caller asks for.

Each NodeConfig also gets a fingerprint without being materialised: every shared entry has a
hash, the lists keep running sums per owning cluster, and "everything but my cluster" is the
total minus my cluster's share - O(1) per node. Two plans' fingerprints tell exactly which
NodeConfigs changed (`changed_since`). Fingerprints use Python's `hash` and are comparable
only within one process.
"""

from __future__ import annotations

import gc
from bisect import bisect_left
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TypeVar

from clusterlink import constants as C
from clusterlink.api.cluster import Cluster
from clusterlink.api.clusternode import ClusterNode
from clusterlink.api.net import ip_sort_key
from clusterlink.api.nodeconfig import (
    AddressMap,
    Arp,
    Device,
    Fdb,
    Iptables,
    NodeConfigSpec,
    Route,
    WireGuardDevice,
    WireGuardPeer,
)
from clusterlink.planner.aggregate import Aggregator
from clusterlink.planner.devices import (
    BRIDGE_DEV,
    LOCAL_DEV,
    WG_DEV,
    AnyDevice,
    DeviceMap,
    bridge_devices,
    device_ip,
    plan_devices,
)
from clusterlink.planner.direct import DirectSet, direct_exemptions, direct_set, group_key, opted_in
from clusterlink.planner.direct import findings as direct_findings
from clusterlink.planner.encryption import plaintext_peers, refused_pairs, wireguard_peers
from clusterlink.planner.exports import Export, ExportTable, build_exports
from clusterlink.planner.findings import Finding, sorted_findings
from clusterlink.planner.l2 import bridge_peer, local_peer
from clusterlink.planner.mss import mss_clamp
from clusterlink.planner.nat import (
    cni_exemptions,
    gateway_masquerade,
    global_map,
    service_address_maps,
    service_masquerade,
)
from clusterlink.planner.topology import FederationView, NodeView, build_topology

_MASK = (1 << 64) - 1
T = TypeVar("T")

# Per family: (owner cluster, entry) of every vx-bridge, in NodeConfig order (`sort_mesh`).
SortedMesh = tuple[dict[int, list[tuple[str, Fdb]]], dict[int, list[tuple[str, Arp]]]]


def fdb_order(entry: tuple[str, Fdb]) -> tuple[tuple[int, int], str]:
    return ip_sort_key(entry[1].ip), entry[1].mac


def arp_order(entry: tuple[str, Arp]) -> tuple[int, int]:
    return ip_sort_key(entry[1].ip)


def sort_mesh(mesh: dict[int, list[tuple[str, Fdb, Arp]]]) -> SortedMesh:
    """The bridge mesh's FDB entries by (underlay IP, MAC) and ARP entries by IP, per family
    (stable: ties keep the mesh's order)."""
    fdbs: dict[int, list[tuple[str, Fdb]]] = {}
    arps: dict[int, list[tuple[str, Arp]]] = {}
    for family, entries in mesh.items():
        fdbs[family] = sorted(((o, f) for o, f, _ in entries), key=fdb_order)
        arps[family] = sorted(((o, a) for o, _, a in entries), key=arp_order)
    return fdbs, arps


def _h_route(r: Route) -> int:
    return hash((r.cidr, r.gw, r.dev, r.mtu))


def _h_l2(e: Fdb | Arp) -> int:
    return hash((type(e).__name__, e.ip, e.mac, e.dev))


@dataclass(frozen=True, slots=True)
class Recipe:
    """What is particular to one node; the shared parts come from the plan's lists."""

    name: str
    cluster: str
    devices: tuple[Device, ...]
    mtu: int  # the node's underlay MTU
    bridge_families: tuple[int, ...]  # families in which the node routes to other clusters
    # Internal nodes: (family, gateway vx-local IP, min(own, gateway's) underlay MTU).
    via_gateway: tuple[tuple[int, str, int], ...]
    local_fdbs: tuple[Fdb, ...]
    local_arps: tuple[Arp, ...]
    iptables: tuple[Iptables, ...]
    address_maps: tuple[AddressMap, ...] = ()
    mesh_families: tuple[int, ...] = ()  # families in which it owns vx-bridge (FDB, ARP)
    wireguard: tuple[WireGuardDevice, ...] = ()

    def own_hash(self) -> int:
        return hash(
            (
                tuple(
                    (d.name, d.addr, d.mac, d.bind_dev, d.id, d.port, d.mtu) for d in self.devices
                ),
                self.mtu,
                self.bridge_families,
                # not the limits: what they do to the routes is in the plan's via fingerprint
                tuple((f, gw) for f, gw, _ in self.via_gateway),
                tuple(_h_l2(e) for e in self.local_fdbs),
                tuple(_h_l2(e) for e in self.local_arps),
                tuple((r.table, r.chain, r.rule) for r in self.iptables),
                tuple((m.dev, m.cidr, m.global_cidr) for m in self.address_maps),
                self.mesh_families,
                self.wireguard,
            )
        )


@dataclass(slots=True)
class _Sums:
    """Running hash sums of a shared list, in total and per owning cluster."""

    total: int = 0
    by_owner: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, owner: str, value: int) -> None:
        self.total = (self.total + value) & _MASK
        self.by_owner[owner] = (self.by_owner[owner] + value) & _MASK

    def without(self, owner: str, minus: int = 0) -> int:
        return (self.total - self.by_owner.get(owner, 0) - minus) & _MASK


@dataclass(slots=True)
class _Below:
    """Exports sorted by their advertiser's underlay MTU, with prefix sums of three hashes
    (`_h_capped`). `below(m)` sums the exports advertised at an MTU < m: those whose route a
    receiver of MTU m caps at the advertiser's MTU."""

    mtus: list[int] = field(default_factory=list)
    sums: list[tuple[int, int, int]] = field(default_factory=lambda: [(0, 0, 0)])

    def add(self, mtu: int, hashes: tuple[int, int, int]) -> None:
        self.mtus.append(mtu)
        last = self.sums[-1]
        self.sums.append(tuple((a + b) & _MASK for a, b in zip(last, hashes, strict=True)))  # type: ignore[arg-type]

    def below(self, mtu: int) -> tuple[int, int, int]:
        return self.sums[bisect_left(self.mtus, mtu)]


def _h_mtu(mtu: int) -> int:
    return hash(("mtu", mtu)) | 1  # odd: multiplying by it loses nothing mod 2^64


def _h_capped(e: Export, mtu: int) -> tuple[int, int, int]:
    """(bridge route with this MTU, CIDR weighted by this MTU, CIDR alone).

    Routes via a gateway carry min(advertiser MTU, limit) - the same value for every export at
    or above the limit - so their fingerprint is the sum of hash(cidr) * h(value): the exports
    below the limit from these prefix sums, the rest as h(limit) * (their hash(cidr) sum)."""
    h_cidr = hash(e.cidr)
    return hash((e.route.cidr, e.route.gw, e.route.dev, mtu)), h_cidr * _h_mtu(mtu), h_cidr


@dataclass(frozen=True)
class PlanDiff:
    changed: list[str]  # NodeConfigs to create or rewrite
    removed: list[str]  # NodeConfigs that no longer exist
    # Filled by `incremental.Planner.update`: every finding, and the plan to materialise from.
    findings: list[Finding] = field(default_factory=list)
    plan: Plan | None = None

    def spec(self, name: str) -> NodeConfigSpec:
        """The NodeConfig of a changed node (a diff from `Planner.update` only)."""
        assert self.plan is not None
        return self.plan.spec(name)


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building millions of entries.

    Entries hold no reference cycles, but each allocation counts towards a collection: with
    the collector on, materialising the 1,000 x 3 gateway federation took 3.7x longer.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class _LRU:
    def __init__(self, size: int) -> None:
        self.size = size
        self.data: OrderedDict[tuple[object, ...], object] = OrderedDict()

    def get(self, key: tuple[object, ...], make: Callable[[], T]) -> T:
        if key in self.data:
            self.data.move_to_end(key)
            return self.data[key]  # type: ignore[return-value]
        with gc_paused():
            value = make()
        self.data[key] = value
        if len(self.data) > self.size:
            self.data.popitem(last=False)
        return value


class Plan:
    # Internal nodes' routes via their gateway are aggregated (`_aggregated`); tests and
    # benches set this False on a plan to get the reference: one route per remote CIDR.
    aggregate = True

    def __init__(
        self,
        topology: FederationView,
        recipes: dict[str, Recipe],
        exports: ExportTable,
        mesh: dict[int, list[tuple[str, Fdb, Arp]]],
        findings: list[Finding],
        direct: dict[str, dict[int, DirectSet]] | None = None,
        *,
        sorted_mesh: SortedMesh | None = None,
    ) -> None:
        """`mesh`: per family (owner cluster, FDB, ARP) of every vx-bridge; or, already in
        the order NodeConfigs list them (`sort_mesh`), `sorted_mesh` (`mesh` unused)."""
        self.topology = topology
        # node -> family -> the exports it reaches by plain routing (planner/direct.py)
        self.direct = direct or {}
        self._direct_hashes: dict[int, tuple[int, int, int]] = {}
        self.recipes = recipes
        self.exports = exports
        self.findings = findings
        self._sums_ready = False
        self._route_sums: dict[int, _Sums] = {}
        self._cidr_sums: dict[int, _Sums] = {}
        self._l2_sums: dict[int, _Sums] = {}
        self._skip_route: dict[tuple[str, int], int] = {}
        self._skip_cidr: dict[tuple[str, int], int] = {}
        self._init_mtus()
        self._mesh_fdbs, self._mesh_arps = (
            sorted_mesh if sorted_mesh is not None else sort_mesh(mesh)
        )
        self._cache = _LRU(64)
        # With encryption, a route's device depends on the pair of clusters, which the running
        # sums do not know: fingerprints hash the materialised NodeConfig instead (O(size)).
        self._encrypted = any(c.encrypted for c in topology.clusters.values())
        self._aggregators: dict[int, Aggregator | None] = {}

    def _ensure_sums(self) -> None:
        """The running hash sums behind `fingerprint` (O(exports + mesh)), on first use."""
        if self._sums_ready:
            return
        self._sums_ready = True
        for family, fdbs in self._mesh_fdbs.items():
            sums = _Sums()
            for owner, entry in fdbs:
                sums.add(owner, _h_l2(entry))
            for owner, arp in self._mesh_arps[family]:
                sums.add(owner, _h_l2(arp))
            self._l2_sums[family] = sums
        for family, table in self.exports.by_family.items():
            routes, cidrs = _Sums(), _Sums()
            for e in table:
                routes.add(e.owner, _h_route(e.route))
                cidrs.add(e.owner, hash(e.cidr))
            self._route_sums[family], self._cidr_sums[family] = routes, cidrs
        for (cluster, family), skipped in self.exports.skipped.items():
            table = self.exports.by_family[family]
            self._skip_route[(cluster, family)] = sum(_h_route(table[i].route) for i in skipped)
            self._skip_cidr[(cluster, family)] = sum(hash(table[i].cidr) for i in skipped)

    def _init_mtus(self) -> None:
        """Path MTUs: a route toward a CIDR advertised by a node of a smaller underlay MTU than
        the receiver's carries that smaller MTU (minus the tunnel's overhead). `_adv` holds each
        export's advertiser MTU; `_below` (federation-wide and per owner) the exports some
        receiver caps - none when every node has the same MTU, the common case."""
        nodes = self.topology.nodes
        top = max((n.mtu for n in nodes.values()), default=0)
        self._adv: dict[int, list[int]] = {}
        self._below: dict[int, _Below] = {}
        self._below_by_owner: dict[int, dict[str, _Below]] = {}
        self._capped: dict[tuple[int, int], Route] = {}
        self._capped_sums: dict[tuple[str, int, int], tuple[int, int, int]] = {}
        for family, table in self.exports.by_family.items():
            adv = [nodes[e.target].mtu for e in table]
            self._adv[family] = adv
            low = sorted((a, i) for i, a in enumerate(adv) if a < top)
            every, by_owner = _Below(), defaultdict[str, _Below](_Below)
            for a, i in low:
                hashes = _h_capped(table[i], a)
                every.add(a, hashes)
                by_owner[table[i].owner].add(a, hashes)
            self._below[family], self._below_by_owner[family] = every, dict(by_owner)

    def _capped_below(self, cluster: str, family: int, mtu: int) -> tuple[int, int, int]:
        """`_h_capped` sums over the exports a node of `cluster` receives in `family` whose
        advertiser MTU is below `mtu`."""
        every = self._below[family]
        if not every.mtus or every.mtus[0] >= mtu:
            return 0, 0, 0
        key = (cluster, family, mtu)
        if key not in self._capped_sums:
            sums = list(every.below(mtu))
            mine = self._below_by_owner[family].get(cluster)
            minus = [mine.below(mtu)] if mine is not None else []
            table, adv = self.exports.by_family[family], self._adv[family]
            minus += [
                _h_capped(table[i], adv[i])
                for i in self.exports.skipped[(cluster, family)]
                if adv[i] < mtu
            ]
            for hashes in minus:
                sums = [a - b for a, b in zip(sums, hashes, strict=True)]
            self._capped_sums[key] = (sums[0] & _MASK, sums[1] & _MASK, sums[2] & _MASK)
        return self._capped_sums[key]

    def _via_sum(self, cluster: str, family: int, limit: int, capped: bool) -> int:
        """sum of hash(cidr) * h(route MTU) over an internal node's routes via its gateway: the
        exports below the limit at their own MTU, the others at the limit (0 if not capped)."""
        everything = self._cidr_sums[family].without(cluster, self._skip_cidr[(cluster, family)])
        _, weighted, plain = self._capped_below(cluster, family, limit)
        rest = _h_mtu(limit if capped else 0) * (everything - plain)
        return hash((everything, (weighted + rest) & _MASK))

    def _capped_route(self, family: int, i: int, wg: bool = False) -> Route:
        """The bridge route of export i with its advertiser's path MTU (shared by receivers).
        `wg`: its WireGuard variant (the effective MTUs already count WireGuard's extra)."""
        key = (family, -1 - i if wg else i)
        route = self._capped.get(key)
        if route is None:
            e = self.exports.by_family[family][i]
            base = e.wg_route if wg and e.wg_route is not None else e.route
            mtu = self._adv[family][i] - C.VXLAN_OVERHEAD[family]
            route = Route.trusted(cidr=base.cidr, gw=base.gw, dev=base.dev, mtu=mtu)
            self._capped[key] = route
        return route

    def share_aggregators(self, other: Plan) -> None:
        """Start from `other`'s route aggregators: they depend on the export CIDRs alone,
        which the caller (an incremental re-plan) vouches are the same."""
        self._aggregators = dict(other._aggregators)

    # -- what exists --------------------------------------------------------------------------

    @property
    def names(self) -> list[str]:
        return list(self.recipes)

    def __contains__(self, name: object) -> bool:
        return name in self.recipes

    def __len__(self) -> int:
        return len(self.recipes)

    # -- fingerprints -------------------------------------------------------------------------

    def _json_fingerprint(self, name: str) -> int:
        return hash(self.spec(name).model_dump_json(by_alias=True))

    def fingerprint(self, name: str) -> int:
        if self._encrypted:
            return self._json_fingerprint(name)
        self._ensure_sums()
        r = self.recipes[name]
        c = r.cluster
        direct = self.direct.get(name, {})
        bridge = tuple(
            (
                f,
                (self._route_sums[f].without(c, self._skip_route[(c, f)]) - replaced) & _MASK,
                self._l2_sums[f].without(c),
                (self._capped_below(c, f, r.mtu)[0] - capped) & _MASK,
                added,
            )
            for f in r.bridge_families
            for replaced, capped, added in (self._direct_terms(direct.get(f), f, r.mtu),)
        )
        via = tuple(
            (f, gw, self._via_sum(c, f, limit, limit < r.mtu)) for f, gw, limit in r.via_gateway
        )
        return hash((r.own_hash(), bridge, via))

    def _direct_terms(self, ds: DirectSet | None, family: int, mtu: int) -> tuple[int, int, int]:
        """What a direct set does to a node's fingerprint: the hashes of the VXLAN routes it
        replaces (as `_route_sums` and, when capped, `_capped_below` count them) and of its
        own routes. Shared by the nodes that share the set (same MTU: `group_key`)."""
        if ds is None:
            return 0, 0, 0
        key = id(ds)
        if key not in self._direct_hashes:
            table, adv = self.exports.by_family[family], self._adv[family]
            replaced = sum(_h_route(table[i].route) for i in ds.indices)
            capped = sum(_h_capped(table[i], adv[i])[0] for i in ds.indices if adv[i] < mtu)
            added = hash(tuple(_h_route(route) for route in ds.routes))
            self._direct_hashes[key] = (replaced, capped, added)
        return self._direct_hashes[key]

    def changed_since(self, old: Plan | None) -> PlanDiff:
        if old is None:
            return PlanDiff(self.names, [])
        mine, theirs = self.fingerprint, old.fingerprint
        if self._encrypted != old._encrypted:  # fingerprints of two kinds: compare the JSON
            mine, theirs = self._json_fingerprint, old._json_fingerprint
        changed = [n for n in self.recipes if n not in old.recipes or theirs(n) != mine(n)]
        removed = [n for n in old.recipes if n not in self.recipes]
        return PlanDiff(changed, removed)

    # -- materialising ------------------------------------------------------------------------

    def _kept(self, cluster: str, family: int) -> list[int]:
        skipped = self.exports.skipped[(cluster, family)]
        return [
            i
            for i, e in enumerate(self.exports.by_family[family])
            if e.owner != cluster and i not in skipped
        ]

    def _bridge_routes(self, cluster: str, family: int, mtu: int) -> list[Route]:
        """Routes of a bridge-set node of underlay MTU `mtu`: toward an advertiser of a smaller
        MTU, the route carries that path MTU. Nodes capping the same exports share the list."""
        capping = bisect_left(self._below[family].mtus, mtu)

        clusters = self.topology.clusters
        encrypted = clusters[cluster].encrypted

        def make() -> list[Route]:
            table = self.exports.by_family[family]
            kept = self._kept(cluster, family)
            adv = self._adv[family]
            out = []
            for i in kept:
                e = table[i]
                # refused pairs are skipped: a pair left here of two encrypted ends is WireGuard
                wg = encrypted and clusters[e.owner].encrypted
                if capping and adv[i] < mtu:
                    out.append(self._capped_route(family, i, wg))
                else:
                    out.append(e.wg_route if wg and e.wg_route is not None else e.route)
            return out

        return self._cache.get(("br", cluster, family, capping), make)

    def _gateway_routes(
        self, cluster: str, family: int, gw: str, limit: int, mtu: int
    ) -> list[Route]:
        """Routes of an internal node of underlay MTU `mtu` via its gateway; `limit` = min(own,
        gateway's) MTU. The path MTU is the smallest underlay MTU on internal -> gateway ->
        advertiser, minus the overhead; 0 (the device's) when that is the node's own."""
        overhead = C.VXLAN_OVERHEAD[family]
        capped = limit < mtu

        def make() -> list[Route]:
            table, adv = self.exports.by_family[family], self._adv[family]
            dev = LOCAL_DEV[family]
            kept = self._kept(cluster, family)
            if not capped and not bisect_left(self._below[family].mtus, limit):  # nothing capped
                aggregated = self._aggregated(cluster, family, gw, dev) if self.aggregate else None
                if aggregated is not None:
                    return aggregated
                return [Route.trusted(cidr=table[i].cidr, gw=gw, dev=dev, mtu=0) for i in kept]
            out = []
            for i in kept:
                path = adv[i] if adv[i] < limit else limit
                out.append(
                    Route.trusted(
                        cidr=table[i].cidr,
                        gw=gw,
                        dev=dev,
                        mtu=path - overhead if capped or path < limit else 0,
                    )
                )
            return out

        return self._cache.get(("gw", cluster, family, gw, limit, capped), make)

    def _aggregated(self, cluster: str, family: int, gw: str, dev: str) -> list[Route] | None:
        """An internal node's routes via its gateway, aggregated (`planner.aggregate`): covering
        routes plus throw routes for the holes; None when that would not be fewer entries."""
        if family not in self._aggregators:
            table = self.exports.by_family[family]
            self._aggregators[family] = Aggregator.of([e.cidr for e in table])
        agg = self._aggregators[family]
        if agg is None:
            return None
        table = self.exports.by_family[family]
        own = [i for i, e in enumerate(table) if e.owner == cluster]
        entries = agg.entries([*own, *self.exports.skipped[(cluster, family)]])
        if entries is None:
            return None
        return [
            Route.trusted(cidr=cidr, gw="", dev="", mtu=0, type="throw")
            if throw
            else Route.trusted(cidr=cidr, gw=gw, dev=dev, mtu=0)
            for cidr, throw in entries
        ]

    def _tunnelled(self, cluster: str, family: int, mtu: int, ds: DirectSet) -> list[Route]:
        """A bridge-set node's VXLAN routes without those its direct set replaces."""
        capping = bisect_left(self._below[family].mtus, mtu)

        def make() -> list[Route]:
            kept = self._kept(cluster, family)
            routes = self._bridge_routes(cluster, family, mtu)
            return [x for i, x in zip(kept, routes, strict=True) if i not in ds.indices]

        return self._cache.get(("direct", cluster, family, capping, id(ds)), make)

    def _fdbs(self, cluster: str, family: int) -> list[Fdb]:
        source = self._mesh_fdbs[family]
        return self._cache.get(
            ("fdb", cluster, family), lambda: [e for o, e in source if o != cluster]
        )

    def _arps(self, cluster: str, family: int) -> list[Arp]:
        source = self._mesh_arps[family]
        return self._cache.get(
            ("arp", cluster, family), lambda: [e for o, e in source if o != cluster]
        )

    def spec(self, name: str) -> NodeConfigSpec:
        """The full NodeConfig spec of one node; every list sorted."""
        r = self.recipes[name]
        routes: list[Route] = []
        fdbs: list[Fdb] = []
        arps: list[Arp] = []
        direct: list[Route] = []
        for f in r.bridge_families:
            ds = self.direct.get(name, {}).get(f)
            if ds is None:
                routes += self._bridge_routes(r.cluster, f, r.mtu)
            else:
                routes += self._tunnelled(r.cluster, f, r.mtu, ds)
                direct += ds.routes
        for f in r.mesh_families:
            fdbs += self._fdbs(r.cluster, f)
            arps += self._arps(r.cluster, f)
        for f, gw, limit in r.via_gateway:
            routes += self._gateway_routes(r.cluster, f, gw, limit, r.mtu)
        if self._encrypted:
            # vx-bridge(-6) and wg-bridge(-6) routes mixed: by device, then CIDR (stable)
            routes.sort(key=lambda route: route.dev)
        fdbs += r.local_fdbs
        arps += r.local_arps
        if direct:  # routes are sorted by device: the NIC's among our vx devices' (and throws)
            nic = direct[0].dev
            routes = (
                [x for x in routes if x.dev < nic] + direct + [x for x in routes if x.dev > nic]
            )
        return NodeConfigSpec.model_construct(
            devices=list(r.devices),
            routes=routes,
            iptables=list(r.iptables),
            fdbs=fdbs,
            arps=arps,
            address_maps=list(r.address_maps),
            wireguard=list(r.wireguard),
        )

    def node_configs(self) -> Iterator[tuple[str, NodeConfigSpec]]:
        for name in self.recipes:
            yield name, self.spec(name)


def plan(clusters: Iterable[Cluster], cluster_nodes: Iterable[ClusterNode]) -> Plan:
    """Clusters + ClusterNodes -> a Plan (NodeConfig per planned ClusterNode) and findings."""
    with gc_paused():
        return _plan(clusters, cluster_nodes)


@dataclass(slots=True)
class Parts:
    """A full plan's intermediate results: what `Plan` is made of, and what
    `incremental.Planner` keeps to patch the next plan instead of making it again."""

    topo: FederationView
    devices: DeviceMap
    exports: ExportTable
    mesh: dict[int, list[tuple[str, Fdb, Arp]]]
    recipes: dict[str, Recipe]
    direct: dict[str, dict[int, DirectSet]]
    # Everything but the topology's own findings (those: `topo.findings`).
    link_findings: list[Finding]
    device_findings: list[Finding]
    export_findings: list[Finding]
    wg_findings: list[Finding]
    direct_findings: list[Finding]

    def findings(self) -> list[Finding]:
        return sorted_findings(
            self.topo.findings
            + self.link_findings
            + self.device_findings
            + self.export_findings
            + self.wg_findings
            + self.direct_findings
        )

    def plan(self) -> Plan:
        return Plan(self.topo, self.recipes, self.exports, self.mesh, self.findings(), self.direct)


def _plan(clusters: Iterable[Cluster], cluster_nodes: Iterable[ClusterNode]) -> Plan:
    return build_parts(clusters, cluster_nodes).plan()


def build_parts(clusters: Iterable[Cluster], cluster_nodes: Iterable[ClusterNode]) -> Parts:
    topo = build_topology(clusters, cluster_nodes)
    refused, link_findings = refused_pairs(topo)
    devices, device_findings = plan_devices(topo, plaintext_peers(topo))
    exports, export_findings = build_exports(topo, devices, refused)
    wg_peers, wg_findings = _wireguard_peers(topo, devices, exports)

    direct = _direct_sets(topo, exports, devices)

    mesh: dict[int, list[tuple[str, Fdb, Arp]]] = {4: [], 6: []}
    for node in topo.nodes.values():
        for family, fdb, arp in mesh_entries(node, devices[node.name]):
            mesh[family].append((node.cluster, fdb, arp))

    recipes = {
        node.name: node_recipe(topo, node, devices, direct, wg_peers)
        for node in topo.nodes.values()
    }
    return Parts(
        topo,
        devices,
        exports,
        mesh,
        dict(sorted(recipes.items())),
        direct,
        link_findings,
        device_findings,
        export_findings,
        wg_findings,
        direct_findings(topo),
    )


def mesh_entries(node: NodeView, mine: dict[str, AnyDevice]) -> list[tuple[int, Fdb, Arp]]:
    """(family, FDB, ARP) every bridge-set node of another cluster installs toward this
    node's vx-bridge devices."""
    out = []
    for family, dev in BRIDGE_DEV.items():
        device = mine.get(dev)
        if isinstance(device, Device):
            out.append((family, *bridge_peer(node.ips[family], device, dev)))
    return out


def node_recipe(
    topo: FederationView,
    node: NodeView,
    devices: DeviceMap,
    direct: dict[str, dict[int, DirectSet]],
    wg_peers: dict[tuple[str, int], list[WireGuardPeer]],
) -> Recipe:
    """What is particular to one node: from its own devices, its cluster, and - in a gateway
    cluster - its gateway's (internal node) or its cluster's nodes' (gateway) vx-local."""
    cluster = topo.clusters[node.cluster]
    mine = devices[node.name]
    gateway = topo.gateway.get(node.cluster)
    bridge_families = tuple(f for f in (4, 6) if bridge_devices(f, mine))
    mesh_families = tuple(f for f, dev in BRIDGE_DEV.items() if dev in mine)
    via: list[tuple[int, str, int]] = []
    local_fdbs: list[Fdb] = []
    local_arps: list[Arp] = []
    iptables: list[Iptables] = []
    if cluster.mode == "gateway" and gateway is not None:
        if gateway == node.name:
            peers = [topo.nodes[n] for n in topo.members[node.cluster] if n != node.name]
            iptables += gateway_masquerade(cluster, mine)
        else:
            peers = [topo.nodes[gateway]]
        for family, dev in LOCAL_DEV.items():
            if dev not in mine:
                continue
            for peer in peers:
                peer_dev = devices[peer.name].get(dev)
                if not isinstance(peer_dev, Device):
                    continue
                fz, fr, arp = local_peer(peer.ips[family], peer_dev, dev)
                local_fdbs += (fz, fr)
                local_arps.append(arp)
            if gateway != node.name:
                gw_dev = devices[gateway].get(dev)
                if gw_dev is not None and bridge_devices(family, devices[gateway]):
                    limit = min(node.mtu, topo.nodes[gateway].mtu)
                    via.append((family, device_ip(gw_dev), limit))
    address_maps: list[AddressMap] = []
    if bridge_families:
        iptables += global_map(cluster, mine)
        address_maps += service_address_maps(cluster, mine)
    if cluster.mode == "p2p" and topo.service_node.get(node.cluster) == node.name:
        iptables += service_masquerade(cluster, node, mine)
    iptables += cni_exemptions(
        cluster, node, mine, gateway=cluster.mode == "gateway" and gateway == node.name
    )
    iptables += direct_exemptions(cluster, node, list(direct.get(node.name, {}).values()))
    iptables += mss_clamp(mine)
    local_fdbs.sort(key=lambda e: (e.dev, ip_sort_key(e.ip), e.mac))
    local_arps.sort(key=lambda e: (e.dev, ip_sort_key(e.ip)))
    iptables.sort(key=lambda r: (r.table, r.chain, r.rule))
    wireguard = tuple(
        wg.model_copy(update={"peers": tuple(wg_peers.get((node.cluster, f), ()))})
        for f, name in WG_DEV.items()
        if isinstance(wg := mine.get(name), WireGuardDevice)
    )
    return Recipe(
        name=node.name,
        cluster=node.cluster,
        mtu=node.mtu,
        devices=tuple(d for d in mine.values() if isinstance(d, Device)),
        mesh_families=mesh_families,
        wireguard=wireguard,
        bridge_families=bridge_families,
        via_gateway=tuple(via),
        local_fdbs=tuple(local_fdbs),
        local_arps=tuple(local_arps),
        iptables=tuple(iptables),
        address_maps=tuple(address_maps),
    )


def _wireguard_peers(
    topo: FederationView, devices: DeviceMap, exports: ExportTable
) -> tuple[dict[tuple[str, int], list[WireGuardPeer]], list[Finding]]:
    """(encrypted cluster, family) -> the peers of its nodes' wg devices (one list, shared by
    every node of the cluster: what they route where is the same). Allowed IPs: the CIDRs the
    cluster routes to that peer (overlaps and refused pairs already skipped)."""
    out: dict[tuple[str, int], list[WireGuardPeer]] = {}
    findings: list[Finding] = []
    encrypted = [c for c in topo.clusters.values() if c.encrypted]
    if not encrypted:
        return out, findings
    for family, dev in WG_DEV.items():
        addresses = {n: d.addr for n, mine in devices.items() if (d := mine.get(dev)) is not None}
        table = exports.by_family.get(family, [])
        by_target: dict[str, list[int]] = {}
        for i, e in enumerate(table):
            if e.wg_route is not None:
                by_target.setdefault(e.target, []).append(i)
        for cluster in encrypted:
            skipped = exports.skipped.get((cluster.name, family), frozenset())
            allowed = {
                node: [table[i].cidr for i in indices if i not in skipped]
                for node, indices in by_target.items()
            }
            peers, more = wireguard_peers(topo, cluster.name, family, dev, addresses, allowed)
            out[(cluster.name, family)] = peers
            findings += more
    return out, findings


def _direct_sets(
    topo: FederationView, exports: ExportTable, devices: DeviceMap
) -> dict[str, dict[int, DirectSet]]:
    """Per node and family, the exports it reaches by plain routing; computed once per group
    of nodes that share the answer (`direct.group_key`): nothing when no cluster opted in."""
    if sum(opted_in(c) for c in topo.clusters.values()) < 2:
        return {}
    out: dict[str, dict[int, DirectSet]] = {}
    groups: dict[tuple[object, ...], DirectSet | None] = {}
    for node in topo.nodes.values():
        if not opted_in(topo.clusters[node.cluster]) or not node.on_link:
            continue
        for family, dev in BRIDGE_DEV.items():
            if dev not in devices[node.name]:
                continue
            key = group_key(node, family)
            if key not in groups:
                table = exports.by_family[family]
                skipped = exports.skipped[(node.cluster, family)]
                kept = [
                    i for i, e in enumerate(table) if e.owner != node.cluster and i not in skipped
                ]
                groups[key] = direct_set(topo, table, kept, node, family)
            ds = groups[key]
            if ds is not None:
                out.setdefault(node.name, {})[family] = ds
    return out
