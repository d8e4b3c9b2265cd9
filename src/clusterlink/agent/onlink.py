"""What the node reaches on its underlay without a gateway (directRouting's fact).

Only the node's kernel knows whether a peer's underlay IP is directly reachable: its route
to the peer has no gateway (flannel's DirectRouting asks `ip route get` per peer). The agent
reports it once for all peers instead: the prefixes whose main-table route is on the NIC with
no gateway, with every more specific main-table route that is not (a route via a gateway or
on another device inside an on-link prefix) cut out, so an address inside the result is one
the kernel would send straight on the NIC. It goes into `ClusterNode.spec.onLinkCIDRs`, and
the planner decides (planner/direct.py): the NodeConfig then says exactly which routes are
direct. Link-local prefixes are left out (peers are reached at global addresses), as is
everything past `MAX_PREFIXES` (a pathological table; the rest keeps VXLAN).
"""

from __future__ import annotations

import ipaddress

from clusterlink.api.net import cidr_sort_key

RTN_UNICAST = 1
MAX_PREFIXES = 32
_LINK_LOCAL = (ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("fe80::/10"))

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def on_link_prefixes(routes: list[tuple[str, str, int, int]], nic: int) -> tuple[str, ...]:
    """From main-table routes (dst CIDR, gateway or "", oif, rtm_type) of both families: the
    prefixes the kernel routes on interface index `nic` without a gateway, sorted."""
    direct: list[Network] = []
    other: list[Network] = []
    for dst, gw, oif, rtype in routes:
        net = ipaddress.ip_network(dst)
        if oif == nic and not gw and rtype == RTN_UNICAST:
            if not any(net.version == ll.version and net.subnet_of(ll) for ll in _LINK_LOCAL):  # type: ignore[arg-type]
                direct.append(net)
        else:
            other.append(net)
    out: list[Network] = []
    for net in direct:
        pieces = [net]
        for cut in other:
            if cut.version != net.version or cut.prefixlen <= net.prefixlen:
                continue
            if not cut.subnet_of(net):  # type: ignore[arg-type]
                continue
            pieces = [
                piece
                for p in pieces
                for piece in (
                    p.address_exclude(cut) if cut.subnet_of(p) else (p,)  # type: ignore[arg-type]
                )
            ]
        out += pieces
    collapsed: list[Network] = []
    for version in (4, 6):
        collapsed += ipaddress.collapse_addresses(n for n in out if n.version == version)  # type: ignore[type-var]
    result = sorted((str(n) for n in collapsed), key=cidr_sort_key)
    return tuple(result[:MAX_PREFIXES])
