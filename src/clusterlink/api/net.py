"""CIDR and address parsing shared by the resources and the planner: one canonical text form."""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable


def normalize_cidr(text: str) -> str:
    """Parse a CIDR and return it in network form (10.237.6.0/18 -> 10.237.0.0/18, v6 compressed)."""
    if not isinstance(text, str) or "/" not in text:
        raise ValueError(f"{text!r} is not a CIDR (expected ADDRESS/PREFIX)")
    try:
        return str(ipaddress.ip_network(text.strip(), strict=False))
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a valid CIDR: {exc}") from None


def normalize_ip(text: str) -> str:
    """Parse a bare IP address and return its canonical text."""
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        raise ValueError(f"{text!r} is not a valid IP address") from None


def cidr_family(cidr: str) -> int:
    return 6 if ":" in cidr else 4


def ip_family(ip: str) -> int:
    return 6 if ":" in ip else 4


def cidrs_overlap(a: str, b: str) -> bool:
    """True when one network contains the other (CIDRs are either nested or disjoint)."""
    na, nb = ipaddress.ip_network(a), ipaddress.ip_network(b)
    return na.version == nb.version and (na.subnet_of(nb) or nb.subnet_of(na))  # type: ignore[arg-type]


@functools.lru_cache(maxsize=1 << 17)
@functools.lru_cache(maxsize=1 << 17)
def cidr_sort_key(cidr: str) -> tuple[int, int, int]:
    """Numeric order: family, then network address, then prefix length."""
    net = ipaddress.ip_network(cidr)
    return (net.version, int(net.network_address), net.prefixlen)


@functools.lru_cache(maxsize=1 << 17)
def ip_sort_key(ip: str) -> tuple[int, int]:
    addr = ipaddress.ip_address(ip)
    return (addr.version, int(addr))


def of_family(value: str, family: int, what: str, normalize: Callable[[str], str]) -> str:
    """`value` normalised, refused when it is of the other family; "" stays "" (unset)."""
    if not value:
        return ""
    text = normalize(value)
    if (":" in text) != (family == 6):
        other = "`ip6`" if family == 4 else "`ip`"
        raise ValueError(
            f"{value!r} is an IPv{10 - family} {what}; this field takes IPv{family} (use {other})"
        )
    return text
