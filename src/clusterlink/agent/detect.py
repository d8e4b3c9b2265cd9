"""NIC and IP auto-detection for the node's ClusterNode (`interfaceName`, `ip`, `ip6`, `mtu`).

Order, as Kosmos: the `nicNodeNames` entry naming this node, else `defaultNICName`, else
(`*`) the interface holding the source address the kernel picks to reach the
`autodetectionMethod: can-reach=IP` target (default 8.8.8.8). A failed detection never
clears a value that is already known.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass

from clusterlink.agent import netns
from clusterlink.agent.kernel import Link
from clusterlink.api.cluster import Cluster
from clusterlink.api.clusternode import ClusterNodeSpec

# Without an autodetectionMethod: IPv4 first (as Kosmos), then IPv6 for IPv6-only nodes.
DEFAULT_CAN_REACH = ("8.8.8.8", "2001:4860:4860::8888")


@dataclass(frozen=True)
class Detected:
    interface: str
    ip: str
    ip6: str
    mtu: int
    on_link: tuple[str, ...] = ()  # directRouting only (agent/onlink.py)


def source_address(target: str, netns_name: str | None) -> str | None:
    """The local address the kernel would use toward `target` (no packet is sent)."""
    family = socket.AF_INET6 if ":" in target else socket.AF_INET
    try:
        with netns.entered(netns_name):
            sock = socket.socket(family, socket.SOCK_DGRAM)
        with sock:
            sock.connect((target, 80))
            return str(sock.getsockname()[0])
    except OSError:
        return None


def choose_nic(cluster: Cluster, spec: ClusterNodeSpec) -> str:
    link = cluster.link
    if link is None:
        return "*"
    for entry in link.nic_node_names:
        if spec.node_name in entry.node_name:
            return entry.interface_name
    return link.default_nic_name or "*"


def detect(
    cluster: Cluster,
    spec: ClusterNodeSpec,
    links: dict[str, Link],
    find_source: Callable[[str], str | None],
    find_on_link: Callable[[str], tuple[str, ...]] = lambda _: (),
) -> tuple[Detected | None, str]:
    """The detected values, or None and why not. `find_on_link(nic)` is asked only when the
    cluster has directRouting."""
    nic = choose_nic(cluster, spec)
    if nic == "*":
        method = cluster.link.autodetection_method if cluster.link else ""
        targets = (method.removeprefix("can-reach="),) if method else DEFAULT_CAN_REACH
        source = target = None
        for target in targets:
            source = find_source(target)
            if source is not None:
                break
        if source is None:
            tried = method or ", ".join(f"can-reach={t}" for t in targets)
            return None, f"no route to {' or '.join(targets)} ({tried})"
        owner = next(
            (lnk for lnk in links.values() if any(a.split("/")[0] == source for a in lnk.addrs)),
            None,
        )
        if owner is None:
            return None, f"no interface holds {source}, the source toward {target}"
        nic = owner.name
    link = links.get(nic)
    if link is None:
        return None, f"interface {nic} not found"
    v4 = next((a.split("/")[0] for a in link.addrs if ":" not in a), "")
    v6 = next((a.split("/")[0] for a in link.addrs if ":" in a), "")
    on_link = find_on_link(nic) if cluster.link and cluster.link.direct_routing else ()
    return Detected(nic, v4, v6, link.mtu, on_link), ""


def merged(spec: ClusterNodeSpec, found: Detected) -> ClusterNodeSpec:
    """Detected values over the known ones; an empty detection keeps what was known, except
    the on-link prefixes: what the kernel says now (none without directRouting)."""
    return spec.model_copy(
        update={
            "interface_name": found.interface or spec.interface_name,
            "ip": found.ip or spec.ip,
            "ip6": found.ip6 or spec.ip6,
            "mtu": found.mtu or spec.mtu,
            "on_link_cidrs": list(found.on_link),
        }
    )
