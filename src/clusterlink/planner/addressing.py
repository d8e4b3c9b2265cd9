"""Address plan of the vx devices: address derivation, collision resolution, MAC, MTU."""

from __future__ import annotations

import functools
import hashlib
import ipaddress

from clusterlink import constants as C


# The planner's pure helpers are memoized: a re-plan after one change recomputes only what
# the change touched (the network-manager plans the same federation again and again).
@functools.lru_cache(maxsize=1 << 17)
def derive_address(
    pool: str, underlay_ip: str
) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    """Pool's network bits + the underlay IP's host bits, with the pool's prefix (Kosmos' rule).

    192.168.1.11 in 220.0.0.0/8 -> 220.168.1.11/8.
    """
    net = ipaddress.ip_network(pool)
    ip = ipaddress.ip_address(underlay_ip)
    if net.version != ip.version:
        raise ValueError(f"pool {pool} and address {underlay_ip} are of different families")
    host_mask = int(net.hostmask)
    value = int(net.network_address) | (int(ip) & host_mask)
    return ipaddress.ip_interface(f"{ipaddress.ip_address(value)}/{net.prefixlen}")


def usable(net: ipaddress.IPv4Network | ipaddress.IPv6Network, value: int) -> bool:
    """Not the network address, nor (IPv4) the broadcast address."""
    if value == int(net.network_address):
        return False
    return not (net.version == 4 and value == int(net.broadcast_address))


def next_free(pool: str, start: int, taken: set[int]) -> int:
    """The first usable address after `start` in the pool (wrapping) that nobody has."""
    net = ipaddress.ip_network(pool)
    first, size = int(net.network_address), net.num_addresses
    offset = start - first
    for step in range(1, min(size, len(taken) + 3)):
        candidate = first + (offset + step) % size
        if candidate not in taken and usable(net, candidate):
            return candidate
    raise ValueError(f"pool {pool} is exhausted")


@functools.lru_cache(maxsize=1 << 17)
def pool_prefixlen(pool: str) -> int:
    return ipaddress.ip_network(pool).prefixlen


@functools.lru_cache(maxsize=1 << 17)
def address_text(value: int) -> str:
    return str(ipaddress.ip_address(value))


@functools.lru_cache(maxsize=1 << 17)
def device_mac(cluster: str, node: str, device: str) -> str:
    """Stable per (cluster, node, device): unicast, locally administered; survives restarts and
    re-elections without reading previous state (Kosmos draws a random one)."""
    digest = bytearray(
        hashlib.blake2b(f"{cluster}/{node}/{device}".encode(), digest_size=6).digest()
    )
    digest[0] = (digest[0] & 0xFE) | 0x02
    return ":".join(f"{b:02x}" for b in digest)


def device_mtu(underlay_mtu: int, underlay_family: int) -> int:
    """VXLAN costs 50 bytes over an IPv4 underlay and 70 over IPv6."""
    return underlay_mtu - C.VXLAN_OVERHEAD[underlay_family]
