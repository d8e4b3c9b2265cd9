"""Static L2 state. Learning is off on every vx device, so a node needs, on its device, a
real-MAC FDB entry (unicast to the peer's underlay address) and a permanent neighbour entry
for the peer's vx address, for every peer it talks to.

The zero-MAC FDB entry (where BUM frames are flooded) is installed only on vx-local, toward a
gateway and its internal nodes, as Kosmos does. On the bridge mesh it is left out: every
neighbour entry is permanent, so nothing there needs flooding, and a flood list would copy
every multicast frame (IPv6 MLD, router solicitations) to every peer in the federation. It
also keeps the largest NodeConfig of a 5,000-cluster gateway federation under etcd's 1.5 MB.
"""

from __future__ import annotations

from clusterlink import constants as C
from clusterlink.api.nodeconfig import Arp, Device, Fdb
from clusterlink.planner.devices import device_ip


def bridge_peer(peer_underlay_ip: str, peer_device: Device, dev: str) -> tuple[Fdb, Arp]:
    """What a bridge-set node installs on `dev` to reach a peer's vx-bridge device."""
    return (
        Fdb.trusted(ip=peer_underlay_ip, mac=peer_device.mac, dev=dev),
        Arp.trusted(ip=device_ip(peer_device), mac=peer_device.mac, dev=dev),
    )


def local_peer(peer_underlay_ip: str, peer_device: Device, dev: str) -> tuple[Fdb, Fdb, Arp]:
    """What a node installs on vx-local to reach its gateway, or a gateway an internal node."""
    return (
        Fdb.trusted(ip=peer_underlay_ip, mac=C.ZERO_MAC, dev=dev),
        *bridge_peer(peer_underlay_ip, peer_device, dev),
    )
