"""The `Kernel` port: everything the agent reads from or writes to a host's network stack.

Two adapters: `LinuxKernel` (pyroute2 + a lean netlink reader + `ip -batch`) and
`FakeKernel` (dicts; refuses what the kernel would refuse).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from clusterlink import constants as C
from clusterlink.api.nodeconfig import NodeConfigSpec

# Entries are compared as plain tuples: a no-op resync hashes and compares ~15,000 of them,
# and building a pydantic model (or even a NamedTuple) per entry costs more than the dump.
RouteKey = tuple[str, str, str, int]  # (cidr, gw, dev, mtu); mtu 0 = the device's; a throw
# route is (cidr, "", "", 0): no device, no next hop; a direct route (directRouting) is on
# the underlay NIC, via the peer's underlay address
FdbKey = tuple[str, str, str]  # (peer underlay ip, mac, dev)
ArpKey = tuple[str, str, str]  # (peer vx ip, mac, dev)


@dataclass(frozen=True, slots=True)
class Link:
    name: str
    index: int
    kind: str  # "vxlan", "veth", ... ("" when the kernel reports none)
    mtu: int
    up: bool
    mac: str
    addrs: tuple[str, ...] = ()  # global-scope "ip/prefix", in kernel order
    vxlan: VxlanSpec | None = None  # how a vxlan link is configured
    carrier: bool = True  # IFF_LOWER_UP: the link below is there (a cut cable clears it)


@dataclass(frozen=True, slots=True)
class VxlanSpec:
    """A vx device exactly as we compare it: desired (from NodeConfig + the bind NIC) or
    observed (read back from the kernel)."""

    name: str
    addr: str  # "ip/prefix" ("" = none)
    mac: str
    bind_dev: str
    vni: int
    port: int
    mtu: int
    local: str  # our underlay address on bind_dev (the tunnel source)
    learning: bool = False
    up: bool = True


@dataclass(frozen=True, slots=True)
class Entries:
    routes: frozenset[RouteKey] = field(default_factory=frozenset)
    fdbs: frozenset[FdbKey] = field(default_factory=frozenset)
    arps: frozenset[ArpKey] = field(default_factory=frozenset)

    @classmethod
    def of(cls, spec: NodeConfigSpec) -> Entries:
        return cls(
            frozenset((r.cidr, r.gw, r.dev, r.mtu) for r in spec.routes),
            frozenset((f.ip, f.mac, f.dev) for f in spec.fdbs),
            frozenset((a.ip, a.mac, a.dev) for a in spec.arps),
        )

    def __len__(self) -> int:
        return len(self.routes) + len(self.fdbs) + len(self.arps)

    def __sub__(self, other: Entries) -> Entries:
        return Entries(self.routes - other.routes, self.fdbs - other.fdbs, self.arps - other.arps)

    def on(self, devices: set[str]) -> Entries:
        """Only the entries on these devices (throw routes hang on none, direct routes on the
        NIC, not on a device of ours: they stay)."""
        return Entries(
            frozenset(r for r in self.routes if r[2] in devices or r[2] not in C.OWNED_DEVICES),
            frozenset(f for f in self.fdbs if f[2] in devices),
            frozenset(a for a in self.arps if a[2] in devices),
        )


def entry_text(entry: tuple[str | int, ...]) -> str:
    """An entry as people read it: its fields, and a route's MTU when it has one."""
    return " ".join(
        f"mtu {x}" if isinstance(x, int) else x for x in entry if not isinstance(x, int) or x
    )


class KernelError(Exception):
    """The kernel refused an operation; the message says which and why."""


class Kernel(Protocol):
    def links(self) -> dict[str, Link]: ...

    def create_vxlan(self, spec: VxlanSpec) -> None:
        """Create the device with its MAC, MTU and address, learning off, and bring it up."""
        ...

    def delete_link(self, name: str) -> None: ...

    def entries(self, devices: Mapping[str, int]) -> Entries:
        """Table-200 routes, FDB entries with a remote address, and permanent neighbours on
        these devices (name -> ifindex); and the table-200 routes we wrote (`proto 200`) on no
        device or another one: throw routes, and direct routes over the underlay NIC."""
        ...

    def change_entries(self, remove: Entries, add: Entries) -> list[str]:
        """Remove, then add (routes after neighbours and FDB). Returns errors, one per entry."""
        ...

    def rule_families(self) -> set[int]:
        """Families (4, 6) that have our `lookup 200` rule at priority 200."""
        ...

    def add_rule(self, family: int) -> None: ...

    def delete_rule(self, family: int) -> None: ...

    def get_sysctl(self, key: str) -> str | None: ...

    def on_link(self, dev: str) -> tuple[str, ...]:
        """The prefixes the main table routes on `dev` without a gateway (agent/onlink.py);
        () when `dev` does not exist."""
        ...

    def set_sysctl(self, key: str, value: str) -> None: ...

    def close(self) -> None: ...
