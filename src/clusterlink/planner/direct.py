"""Direct routing (ours; flannel's DirectRouting, Calico's CrossSubnet).

A node of a P2P cluster with `directRouting: true` reaches a pod block of a node of another
such cluster by plain routing - `<block> via <peer underlay IP> dev <own NIC>` in table 200 -
when the peer's underlay IP is on-link for it: inside one of the prefixes its agent reported
in `ClusterNode.spec.onLinkCIDRs` (what its kernel routes on the NIC without a gateway). Every
other export keeps its VXLAN route. The decision is the planner's, from what the node
reported: the NodeConfig says exactly which routes are direct, and the agent installs it as
it installs any route.

Only pod blocks of P2P nodes: Service CIDRs arrive at the service node over vx-bridge (its
MARK rule keys on it), gateway-mode clusters NAT on vx-bridge, and globalCIDRsMap's NETMAP
rules match vx-bridge; those clusters keep VXLAN (a finding says so).
"""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass

from clusterlink.api.net import cidr_family
from clusterlink.api.nodeconfig import Iptables, Route
from clusterlink.planner.exports import Export
from clusterlink.planner.findings import Finding
from clusterlink.planner.topology import ClusterView, FederationView, NodeView

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def opted_in(cluster: ClusterView) -> bool:
    """Direct routing applies to the cluster: opted in, P2P, no globalCIDRsMap, and not
    encrypted (plain routing over the underlay would carry its traffic in the clear)."""
    return (
        cluster.direct_routing
        and cluster.mode == "p2p"
        and not cluster.global_map
        and not cluster.encrypted
    )


def findings(topo: FederationView) -> list[Finding]:
    out = []
    for cluster in topo.clusters.values():
        if cluster.direct_routing and not opted_in(cluster):
            why = (
                "gateway mode"
                if cluster.mode != "p2p"
                else "encryption"
                if cluster.encrypted
                else "a globalCIDRsMap"
            )
            out.append(
                Finding(
                    "info",
                    f"Cluster/{cluster.name}",
                    f"directRouting is ignored with {why}: its traffic stays on VXLAN",
                )
            )
    return out


@functools.lru_cache(maxsize=4096)
def _networks(prefixes: tuple[str, ...], family: int) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(p) for p in prefixes if cidr_family(p) == family)


def on_link(node: NodeView, ip: str, family: int) -> bool:
    """The node's kernel reaches `ip` without a gateway on its NIC (as its agent reported)."""
    addr = ipaddress.ip_address(ip)
    return any(addr in net for net in _networks(node.on_link, family))


@dataclass(frozen=True, slots=True)
class DirectSet:
    """The exports (indices into the family's table) a node reaches directly, and the routes
    that replace their VXLAN ones (same CIDR), sorted by CIDR."""

    indices: frozenset[int]
    routes: tuple[Route, ...]

    @property
    def cidrs(self) -> tuple[str, ...]:
        return tuple(r.cidr for r in self.routes)


def group_key(node: NodeView, family: int) -> tuple[object, ...]:
    """Nodes with the same key get the same direct set (shared, computed once)."""
    return (node.cluster, family, node.interface, node.on_link, node.mtu)


def direct_set(
    topo: FederationView, table: list[Export], kept: list[int], node: NodeView, family: int
) -> DirectSet | None:
    """The direct routes of `node` in `family` among its kept exports; None when none."""
    if not opted_in(topo.clusters[node.cluster]) or not node.on_link or family not in node.ips:
        return None
    indices: list[int] = []
    routes: list[Route] = []
    for i in kept:
        e = table[i]
        target = topo.nodes[e.target]
        peer_ip = target.ips.get(family)
        if (
            peer_ip is None
            or not opted_in(topo.clusters[e.owner])
            or e.cidr not in target.pod_cidrs
            or not on_link(node, peer_ip, family)
        ):
            continue
        mtu = target.mtu if target.mtu < node.mtu else 0  # no tunnel: the smaller underlay
        indices.append(i)
        routes.append(Route.trusted(cidr=e.cidr, gw=peer_ip, dev=node.interface, mtu=mtu))
    if not routes:
        return None
    return DirectSet(frozenset(indices), tuple(routes))


def direct_exemptions(
    cluster: ClusterView, node: NodeView, direct: list[DirectSet]
) -> list[Iptables]:
    """With a CNI that masquerades (any but Calico, whose IPPools for remote CIDRs are
    destination-based and so hold for direct traffic too), pod traffic leaving by a direct
    route must be exempted as the tunnel's is: `-s <own pod CIDR> -d <remote block> -o <NIC>
    -j ACCEPT`. Disjoint from every other POSTROUTING rule of ours (`-o` differs from the
    vx rules; the service node's masquerade matches remote sources, not our pods)."""
    if cluster.cni == "calico" or not direct:
        return []
    pods = cluster.pod_cidrs or node.pod_cidrs
    rules = []
    for ds in direct:
        family = cidr_family(ds.routes[0].cidr)
        mine = [c for c in pods if cidr_family(c) == family]
        for src in mine:
            for dst in ds.cidrs:
                rules.append(
                    Iptables.trusted(
                        table="nat",
                        chain="POSTROUTING",
                        rule=f"-s {src} -d {dst} -o {node.interface} -j ACCEPT",
                    )
                )
    return rules
