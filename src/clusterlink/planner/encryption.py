"""Encrypted links: which cluster pairs talk over WireGuard, which in VXLAN, which not at all,
and the peers of a node's WireGuard devices.

A link is encrypted when both clusters ask for `encryption: wireguard`. When only one does,
the pair is not linked (a warning on both) unless the cluster that asked for encryption allows
plaintext (`allowPlaintext: true`): then that link runs in VXLAN, as between two unencrypted
clusters. Only the cluster asking for encryption can give it up; the other end has nothing to
lose.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Literal

from clusterlink import constants as C
from clusterlink.api.nodeconfig import WireGuardPeer
from clusterlink.planner.findings import Finding
from clusterlink.planner.topology import ClusterView, FederationView, NodeView

LinkKind = Literal["wireguard", "vxlan"]


def link_kind(a: ClusterView, b: ClusterView) -> LinkKind | None:
    """How two clusters are linked; None: refused (encryption asked by one end only)."""
    if a.encrypted and b.encrypted:
        return "wireguard"
    if not a.encrypted and not b.encrypted:
        return "vxlan"
    return "vxlan" if (a if a.encrypted else b).allow_plaintext else None


def plaintext_peers(topo: FederationView) -> set[str]:
    """Encrypted clusters that also keep a VXLAN bridge: they allow plaintext and some other
    cluster is unencrypted."""
    plain = [c for c in topo.clusters.values() if not c.encrypted]
    if not plain:
        return set()
    return {c.name for c in topo.clusters.values() if c.encrypted and c.allow_plaintext}


def refused_pairs(topo: FederationView) -> tuple[dict[str, set[str]], list[Finding]]:
    """receiver cluster -> the clusters it is not linked to, and a warning per refused pair on
    each side. O(encrypted x unencrypted) - zero work when nobody asks for encryption."""
    refused: dict[str, set[str]] = defaultdict(set)
    findings: list[Finding] = []
    encrypted = [c for c in topo.clusters.values() if c.encrypted]
    plain = [c for c in topo.clusters.values() if not c.encrypted] if encrypted else []
    for enc in encrypted:
        for other in plain:
            if enc.allow_plaintext:
                findings.append(
                    Finding(
                        "info",
                        f"Cluster/{enc.name}",
                        f"linked to {other.name} in plaintext (VXLAN): it has no encryption "
                        "and allowPlaintext is true",
                    )
                )
                continue
            refused[enc.name].add(other.name)
            refused[other.name].add(enc.name)
            findings.append(
                Finding(
                    "warning",
                    f"Cluster/{enc.name}",
                    f"asks for encryption (wireguard) but {other.name} does not: not linked "
                    "(allowPlaintext: true would link them in plaintext)",
                )
            )
            findings.append(
                Finding(
                    "warning",
                    f"Cluster/{other.name}",
                    f"{enc.name} asks for encryption (wireguard) and this cluster does not: "
                    "not linked",
                )
            )
    return dict(refused), findings


def endpoint(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def host_cidr(addr: str) -> str:
    ip = addr.split("/", 1)[0]
    return f"{ip}/128" if ":" in ip else f"{ip}/32"


def wireguard_peers(
    topo: FederationView,
    cluster: str,
    family: int,
    dev: str,
    addresses: Mapping[str, str],
    allowed: Mapping[str, list[str]],
) -> tuple[list[WireGuardPeer], list[Finding]]:
    """Peers of a `dev` (family `family`) on a bridge-set node of `cluster`: every node of the
    other encrypted clusters owning the same device, with its public key, its underlay address
    and port, and as allowed IPs its own device address plus the CIDRs routed to it here.
    `addresses`: node -> its `dev` address; `allowed`: node -> CIDRs this cluster routes to it.
    The same for every node of the cluster (one list, shared)."""
    mine = topo.clusters[cluster]
    peers: list[WireGuardPeer] = []
    findings: list[Finding] = []
    for other, members in topo.members.items():
        if other == cluster or link_kind(mine, topo.clusters[other]) != "wireguard":
            continue
        for name in members:
            if name not in addresses:
                continue
            node: NodeView = topo.nodes[name]
            if not node.public_key:
                findings.append(
                    Finding(
                        "info",
                        f"ClusterNode/{name}",
                        "no wireguardPublicKey yet (its agent has not started): not peered",
                    )
                )
                continue
            peers.append(
                WireGuardPeer.trusted(
                    public_key=node.public_key,
                    endpoint=endpoint(node.ips[family], C.WG_PORT[dev]),
                    allowed_ips=(host_cidr(addresses[name]), *allowed.get(name, ())),
                )
            )
    peers.sort(key=lambda p: p.public_key)
    return peers, findings
