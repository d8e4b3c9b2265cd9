"""Builders for planner inputs, and a packet walker that follows NodeConfigs hop by hop."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from clusterlink.api import (
    Cluster,
    ClusterLinkOptions,
    ClusterLinkStatus,
    ClusterNode,
    ClusterNodeSpec,
    ClusterSpec,
    ClusterStatus,
    NodeConfigSpec,
    ObjectMeta,
)
from clusterlink.planner import Plan


def cluster(
    name: str,
    mode: str = "p2p",
    family: str = "ipv4",
    pods: tuple[str, ...] = (),
    services: tuple[str, ...] = (),
    enable: bool = True,
    global_map: dict[str, str] | None = None,
    cni: str = "calico",
    encryption: str = "none",
    allow_plaintext: bool = False,
    direct: bool = False,
) -> Cluster:
    return Cluster(
        metadata=ObjectMeta(name=name),
        spec=ClusterSpec(
            cluster_link_options=ClusterLinkOptions(
                enable=enable,
                network_type=mode,  # type: ignore[arg-type]
                ip_family=family,  # type: ignore[arg-type]
                global_cidrs_map=global_map or {},
                cni=cni,
                encryption=encryption,  # type: ignore[arg-type]
                allow_plaintext=allow_plaintext,
                direct_routing=direct,
            )
        ),
        status=ClusterStatus(
            cluster_link_status=ClusterLinkStatus(
                pod_cidrs=list(pods), service_cidrs=list(services)
            )
        ),
    )


def node(
    cluster_name: str,
    name: str,
    ip: str = "",
    ip6: str = "",
    gateway: bool = False,
    pods: tuple[str, ...] = (),
    iface: str = "eth0",
    mtu: int | None = None,
    key: str = "",
    on_link: tuple[str, ...] = (),
) -> ClusterNode:
    return ClusterNode(
        metadata=ObjectMeta(
            name=f"{cluster_name}-{name}", labels={"kosmos.io/cluster": cluster_name}
        ),
        spec=ClusterNodeSpec(
            cluster_name=cluster_name,
            node_name=name,
            ip=ip,
            ip6=ip6,
            roles=["gateway"] if gateway else [],
            pod_cidrs=list(pods),
            interface_name=iface,
            mtu=mtu,
            wireguard_public_key=key,
            on_link_cidrs=list(on_link),
        ),
    )


def wg_key(name: str) -> str:
    """A stable, well-formed WireGuard public key for a test node."""
    import base64
    import hashlib

    return base64.b64encode(hashlib.sha256(name.encode()).digest()).decode()


@dataclass(frozen=True)
class Hop:
    node: str
    dev: str
    to: str


class WalkError(AssertionError):
    pass


def next_hop(plan: Plan, specs: dict[str, NodeConfigSpec], here: str, dst: str) -> Hop | None:
    """Where `here` sends a packet for `dst` per its NodeConfig (longest prefix), resolved via
    its neighbour and FDB entries to the node owning that underlay IP and device; None if no
    route matches. Raises WalkError, naming the hop, when resolution breaks."""
    spec = specs[here]
    addr = ipaddress.ip_address(dst)
    best = None
    for route in spec.routes:
        net = ipaddress.ip_network(route.cidr)
        if (
            addr.version == net.version
            and addr in net
            and (best is None or net.prefixlen > best[0])
        ):
            best = (net.prefixlen, route)
    if best is None:
        return None
    route = best[1]
    if route.dev.startswith("wg-"):
        return _wireguard_hop(plan, specs, here, route.dev, dst)
    if route.dev == plan.topology.nodes[here].interface and route.dev not in {
        d.name for d in spec.devices
    }:  # a direct route (directRouting): the next hop is a peer's underlay address
        peers = [n for n, v in plan.topology.nodes.items() if route.gw in v.ips.values()]
        if len(peers) != 1:
            raise WalkError(f"{here}: direct route {route.cidr} via {route.gw}: owners {peers}")
        return Hop(here, route.dev, peers[0])
    if route.dev not in {d.name for d in spec.devices}:
        raise WalkError(f"{here}: route {route.cidr} uses {route.dev}, which the node does not own")
    arps = [a for a in spec.arps if a.dev == route.dev and a.ip == route.gw]
    if len(arps) != 1:
        raise WalkError(
            f"{here}: {len(arps)} neighbour entries for next hop {route.gw} on {route.dev}"
        )
    mac = arps[0].mac
    fdbs = [f for f in spec.fdbs if f.dev == route.dev and f.mac == mac]
    if len(fdbs) != 1:
        raise WalkError(f"{here}: {len(fdbs)} FDB entries for {mac} on {route.dev}")
    underlay = fdbs[0].ip
    flood = any(
        f.dev == route.dev and f.ip == underlay and f.mac == "00:00:00:00:00:00" for f in spec.fdbs
    )
    if route.dev.startswith("vx-local") and not flood:
        raise WalkError(f"{here}: no flood (zero-MAC) FDB entry toward {underlay} on {route.dev}")
    owners = []
    for name, other in specs.items():
        view = plan.topology.nodes[name]
        if underlay not in view.ips.values():
            continue
        for dev in other.devices:
            if dev.name == route.dev and dev.mac == mac and dev.addr.split("/")[0] == route.gw:
                owners.append(name)
    if len(owners) != 1:
        raise WalkError(f"{here}: next hop {route.gw} ({mac} at {underlay}) is owned by {owners}")
    return Hop(here, route.dev, owners[0])


def _wireguard_hop(
    plan: Plan, specs: dict[str, NodeConfigSpec], here: str, dev: str, dst: str
) -> Hop:
    """A WireGuard device sends to the peer whose allowed IPs hold `dst` (longest prefix), at
    its endpoint; that node must own the device and hold the peer's public key."""
    devices = [w for w in specs[here].wireguard if w.name == dev]
    if len(devices) != 1:
        raise WalkError(f"{here}: routes over {dev}, which the node does not own")
    addr = ipaddress.ip_address(dst)
    best = None
    for peer in devices[0].peers:
        for cidr in peer.allowed_ips:
            net = ipaddress.ip_network(cidr)
            fits = addr.version == net.version and addr in net
            if fits and (best is None or net.prefixlen > best[0]):
                best = (net.prefixlen, peer)
    if best is None:
        raise WalkError(f"{here}: no {dev} peer allows {dst}")
    peer = best[1]
    ip = peer.endpoint.rsplit(":", 1)[0].strip("[]")
    owners = [
        name
        for name, other in specs.items()
        if ip in plan.topology.nodes[name].ips.values()
        and any(w.name == dev for w in other.wireguard)
        and plan.topology.nodes[name].public_key == peer.public_key
    ]
    if len(owners) != 1:
        raise WalkError(f"{here}: {dev} peer {peer.endpoint} is owned by {owners}")
    return Hop(here, dev, owners[0])


def walk(
    plan: Plan, specs: dict[str, NodeConfigSpec], start: str, dst: str, max_hops: int = 2
) -> list[Hop]:
    """Follow routes from `start` until no route matches (delivered locally)."""
    hops: list[Hop] = []
    here = start
    while True:
        hop = next_hop(plan, specs, here, dst)
        if hop is None:
            return hops
        hops.append(hop)
        if len(hops) > max_hops:
            raise WalkError(f"{start} -> {dst}: more than {max_hops} VXLAN hops: {hops}")
        here = hop.to
