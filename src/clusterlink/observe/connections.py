"""`kosmosctl get connections`: one row per link a prober measured - per cluster pair between
gateway-mode clusters (their gateways), per node pair where a side is a P2P node - from the
agents' `LinkHealth` objects, peers named through the NodeConfigs' tunnel devices."""

from __future__ import annotations

import datetime as dt
import ipaddress
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from clusterlink.agent.health import TUNNELS
from clusterlink.api.cluster import Cluster
from clusterlink.api.clusternode import ClusterNode
from clusterlink.api.linkhealth import HEALTH_REFRESH, LinkHealth
from clusterlink.api.meta import parse_rfc3339
from clusterlink.api.nodeconfig import NodeConfig
from clusterlink.store.base import Store

STALE_AFTER = 3 * HEALTH_REFRESH  # a LinkHealth not rewritten for this long: its agent is gone


@dataclass(frozen=True)
class Connection:
    source: str  # the cluster (gateway mode) or cluster/node (P2P) that probes
    target: str
    status: str  # up, down, unknown (never measured, or its prober went quiet)
    rtt_seconds: float | None
    loss: float
    since: str | None
    source_node: str  # ClusterNode names
    target_node: str
    peer: str  # the target's tunnel address
    device: str

    def to_dict(self) -> dict[str, object]:
        return {_camel(k): v for k, v in asdict(self).items()}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _tunnel_addresses(configs: list[NodeConfig]) -> dict[str, str]:
    """Tunnel address -> ClusterNode name, from every NodeConfig's vx-bridge devices."""
    return {
        str(ipaddress.ip_interface(d.addr).ip): nc.name
        for nc in configs
        for d in nc.spec.devices
        if d.name in TUNNELS
    }


def connections(store: Store, now: dt.datetime | None = None) -> list[Connection]:
    now = now or dt.datetime.now(dt.UTC)
    nodes = {cn.name: cn for cn in store.list(ClusterNode)}
    p2p = {c.name for c in store.list(Cluster) if c.link and c.link.network_type == "p2p"}
    owner = _tunnel_addresses(list(store.list(NodeConfig)))

    def side(node: str) -> str:
        cn = nodes.get(node)
        if cn is None:
            return node
        cluster = cn.spec.cluster_name
        return f"{cluster}/{cn.spec.node_name}" if cluster in p2p else cluster

    rows = []
    for health in store.list(LinkHealth):
        probed = health.spec.probed_at
        stale = probed is None or (now - parse_rfc3339(probed)).total_seconds() > STALE_AFTER
        for peer in health.spec.peers:
            target = owner.get(peer.peer, peer.peer)
            src, dst = side(health.name), side(target)
            if src == dst:
                continue
            rows.append(
                Connection(
                    src,
                    dst,
                    "unknown" if stale else peer.status,
                    peer.rtt_seconds,
                    peer.loss,
                    peer.since,
                    health.name,
                    target,
                    peer.peer,
                    peer.device,
                )
            )
    return sorted(rows, key=lambda c: (c.source, c.target, c.device))


def wait_up(
    store: Store,
    timeout: float,
    poll: float = 0.5,
    progress: Callable[[list[Connection]], None] | None = None,
) -> tuple[bool, list[Connection]]:
    """Until every connection is up (and there is one): (all up, the last rows)."""
    deadline = time.monotonic() + timeout
    while True:
        rows = connections(store)
        if rows and all(c.status == "up" for c in rows):
            return True, rows
        if progress is not None:
            progress(rows)
        if time.monotonic() >= deadline:
            return False, rows
        time.sleep(poll)
