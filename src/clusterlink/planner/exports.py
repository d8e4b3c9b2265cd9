"""Advertised CIDRs: who announces which CIDR, and which receivers must skip which ones.

A P2P cluster's node advertises its own pod blocks; a gateway-mode cluster advertises its pod
CIDRs at its gateway; every cluster advertises its service CIDRs at its service node (its
gateway; in a P2P cluster without one, its first node by name). A CIDR inside a key of the
owner's globalCIDRsMap is advertised under its global CIDR: the key itself, or a per-node
block inside a cluster-wide key, at the same offset in the global CIDR.
"""

from __future__ import annotations

import ipaddress
from bisect import bisect_left, bisect_right
from dataclasses import dataclass

from clusterlink.api.net import cidr_family, cidr_sort_key
from clusterlink.api.nodeconfig import Route
from clusterlink.planner.devices import BRIDGE_DEV, WG_DEV, DeviceMap, device_ip
from clusterlink.planner.findings import Finding
from clusterlink.planner.topology import ClusterView, FederationView


@dataclass(frozen=True, slots=True)
class Export:
    cidr: str
    owner: str  # cluster
    target: str  # node that receives the traffic (owns the vx-bridge the route points at)
    route: Route  # the route a bridge-set node of another cluster installs (vx-bridge if any)
    # The route over wg-bridge, for receivers linked to the owner in WireGuard (None: the
    # owner is not encrypted). An encrypted owner without vx-bridge has `route` = this one.
    wg_route: Route | None = None


@dataclass(frozen=True, slots=True)
class ExportTable:
    """Per family: exports sorted by CIDR (one per CIDR), and each cluster's skipped indices."""

    by_family: dict[int, list[Export]]
    skipped: dict[tuple[str, int], frozenset[int]]  # (receiver cluster, family) -> indices


def advertised(topo: FederationView, cluster: ClusterView) -> list[tuple[str, str]]:
    """(cidr, target node) pairs the cluster announces, before the global map."""
    out: list[tuple[str, str]] = []
    gateway = topo.gateway.get(cluster.name)
    if cluster.mode == "p2p":
        for name in topo.members[cluster.name]:
            out.extend((cidr, name) for cidr in topo.nodes[name].pod_cidrs)
    elif gateway is not None:
        pods = cluster.pod_cidrs or tuple(
            sorted(
                {c for n in topo.members[cluster.name] for c in topo.nodes[n].pod_cidrs},
                key=cidr_sort_key,
            )
        )
        out.extend((cidr, gateway) for cidr in pods)
    service_node = topo.service_node.get(cluster.name)
    if service_node is not None:
        out.extend((cidr, service_node) for cidr in cluster.service_cidrs)
    return out


def to_global(global_map: dict[str, str], cidr: str) -> str:
    """`cidr` as the federation sees it: its global CIDR when it lies inside a key of the
    map (same offset, same prefix length), else itself."""
    if not global_map:
        return cidr
    if cidr in global_map:
        return global_map[cidr]
    net = ipaddress.ip_network(cidr)
    for real, glob in global_map.items():
        key = ipaddress.ip_network(real)
        if key.version == net.version and net.subnet_of(key):  # type: ignore[arg-type]
            offset = int(net.network_address) - int(key.network_address)
            base = ipaddress.ip_network(glob).network_address + offset
            return f"{base}/{net.prefixlen}"
    return cidr


def make_export(
    cluster: ClusterView, real: str, target: str, devices: DeviceMap
) -> Export | Finding:
    """The export of one advertised CIDR, or why it is not advertised."""
    family = cidr_family(real)
    dev, wg = BRIDGE_DEV[family], WG_DEV[family]
    device, wg_device = devices[target].get(dev), devices[target].get(wg)
    if device is None and wg_device is None:
        return Finding(
            "warning",
            f"ClusterNode/{target}",
            f"{real} is IPv{family} but the node has no {dev}: not advertised",
        )
    cidr = to_global(cluster.global_map, real)
    wg_route = None
    if wg_device is not None:
        wg_route = Route.trusted(cidr=cidr, gw=device_ip(wg_device), dev=wg, mtu=0)
    route = wg_route
    if device is not None:
        route = Route.trusted(cidr=cidr, gw=device_ip(device), dev=dev, mtu=0)
    assert route is not None
    return Export(cidr, cluster.name, target, route, wg_route)


def build_exports(
    topo: FederationView, devices: DeviceMap, refused: dict[str, set[str]] | None = None
) -> tuple[ExportTable, list[Finding]]:
    """The export table. `refused`: receiver cluster -> clusters it is not linked to (an
    encryption mismatch): their exports are skipped there like overlapping ones."""
    findings: list[Finding] = []
    raw: dict[int, list[Export]] = {4: [], 6: []}
    for cluster in topo.clusters.values():
        if cluster.mode == "gateway" and not cluster.pod_cidrs and cluster.name in topo.gateway:
            findings.append(
                Finding(
                    "info",
                    f"Cluster/{cluster.name}",
                    "status.clusterLinkStatus.podCIDRs is empty: advertising its nodes' podCIDRs",
                )
            )
        for real, target in advertised(topo, cluster):
            made = make_export(cluster, real, target, devices)
            if isinstance(made, Finding):
                findings.append(made)
            else:
                raw[cidr_family(real)].append(made)

    by_family: dict[int, list[Export]] = {}
    for family, exports in raw.items():
        exports.sort(key=lambda e: (cidr_sort_key(e.cidr), e.owner, e.target))
        unique: list[Export] = []
        for export in exports:
            if unique and unique[-1].cidr == export.cidr:
                kept = unique[-1]
                findings.append(
                    Finding(
                        "warning",
                        f"ClusterNode/{export.target}",
                        f"{export.cidr} is also advertised by {kept.target} (cluster "
                        f"{kept.owner}); only that one is routed",
                    )
                )
                continue
            unique.append(export)
        by_family[family] = unique

    skipped: dict[tuple[str, int], frozenset[int]] = {}
    indexes = {family: _Index(exports) for family, exports in by_family.items()}
    for cluster in topo.clusters.values():
        for family, exports in by_family.items():
            hits = indexes[family].overlapping(cluster, family)
            not_linked = (refused or {}).get(cluster.name)
            if not_linked:
                unlinked = {i for i, e in enumerate(exports) if e.owner in not_linked}
            else:
                unlinked = set()
            skipped[(cluster.name, family)] = frozenset(hits | unlinked)
            for i in sorted(hits - unlinked):
                export = exports[i]
                findings.append(
                    Finding(
                        "warning",
                        f"Cluster/{cluster.name}",
                        f"{export.cidr} of cluster {export.owner} overlaps this cluster's own "
                        "CIDRs: not routed here (use globalCIDRsMap)",
                    )
                )
    return ExportTable(by_family, skipped), findings


class _Index:
    """Exports by start address and by CIDR, for overlap queries in O(log n) each."""

    def __init__(self, exports: list[Export]) -> None:
        self.exports = exports
        keys = [cidr_sort_key(e.cidr) for e in exports]
        self.starts = [k[1] for k in keys]
        self.by_net = {(k[1], k[2]): i for i, k in enumerate(keys)}  # (network, prefix length)

    def overlapping(self, cluster: ClusterView, family: int) -> set[int]:
        """Indices of other clusters' exports that overlap the cluster's local CIDRs.

        CIDRs are nested or disjoint, so an export overlaps a local CIDR when it lies inside
        it (its start falls in the local range) or contains it (it is one of its supernets).
        """
        hits: set[int] = set()
        bits = 32 if family == 4 else 128
        for local in cluster.local_cidrs:
            version, lo, prefix = cidr_sort_key(local)
            if version != family:
                continue
            hi = lo | ((1 << (bits - prefix)) - 1)
            hits.update(range(bisect_left(self.starts, lo), bisect_right(self.starts, hi)))
            for plen in range(prefix - 1, -1, -1):  # its supernets, by integer arithmetic
                supernet = (lo >> (bits - plen)) << (bits - plen), plen
                if supernet in self.by_net:
                    hits.add(self.by_net[supernet])
        return {i for i in hits if self.exports[i].owner != cluster.name}
