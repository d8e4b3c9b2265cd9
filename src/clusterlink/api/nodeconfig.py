"""The `NodeConfig` resource: the complete kernel state one node should have.

Entries are frozen so the planner can share one instance among thousands of NodeConfigs.
"""

from __future__ import annotations

import ipaddress
import operator
import re
from typing import Any, ClassVar, Literal, Self

from pydantic import ConfigDict, Field, field_validator, model_validator

from clusterlink import constants as C
from clusterlink.api.clusternode import check_wireguard_key
from clusterlink.api.meta import Model, Resource
from clusterlink.api.net import normalize_cidr, normalize_ip

_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


def _mac(value: str) -> str:
    mac = value.lower()
    if not _MAC.match(mac):
        raise ValueError(f"{value!r} is not a MAC address (aa:bb:cc:dd:ee:ff)")
    return mac


class Entry(Model):
    model_config = ConfigDict(frozen=True)

    @classmethod
    def trusted(cls, **values: Any) -> Self:
        """Build without validation, for values the planner derived itself (twice as fast as
        `model_construct`; the planner makes millions of these in large federations)."""
        obj = cls.__new__(cls)
        object.__setattr__(obj, "__dict__", values)
        object.__setattr__(obj, "__pydantic_fields_set__", set(values))
        object.__setattr__(obj, "__pydantic_extra__", None)
        object.__setattr__(obj, "__pydantic_private__", None)
        return obj


class Device(Entry):
    type: Literal["vxlan"] = "vxlan"
    name: str
    addr: str  # interface form: the device address with the pool's prefix, e.g. 220.168.1.11/8
    mac: str
    bind_dev: str
    id: int = Field(ge=1, le=16777215)
    port: int = Field(ge=1, le=65535)
    mtu: int = Field(default=0, ge=0, le=65535)  # ours; 0 = agent derives from bindDev

    @field_validator("addr")
    @classmethod
    def _addr(cls, value: str) -> str:
        try:
            return str(ipaddress.ip_interface(value))
        except ValueError:
            raise ValueError(f"{value!r} is not an ADDRESS/PREFIX") from None

    @field_validator("mac")
    @classmethod
    def _mac(cls, value: str) -> str:
        return _mac(value)


class Route(Entry):
    cidr: str
    gw: str = ""
    dev: str = ""
    # Ours: the path MTU toward the CIDR when it is below the device's (a peer on a smaller
    # underlay). 0 = the device MTU; left out of manifests then, so Kosmos' shape is kept.
    # `trusted` callers must pass it (no per-call default filling: millions of routes).
    # operator.not_, not a lambda: called per route when dumping; a C function costs nothing.
    mtu: int = Field(default=0, ge=0, le=65535, exclude_if=operator.not_)
    # Ours: "throw" ends the lookup in table 200 for this CIDR (the main table decides): an
    # aggregated route's hole, e.g. the node's own cluster inside a covering route. A throw
    # route has no gw, dev or mtu. "" (left out of manifests) = a route via gw on dev.
    type: Literal["", "throw"] = Field(default="", exclude_if=operator.not_)

    @classmethod
    def trusted(cls, **values: Any) -> Self:
        values.setdefault("type", "")
        return super().trusted(**values)

    @property
    def is_throw(self) -> bool:
        return self.type == "throw"

    @field_validator("cidr")
    @classmethod
    def _cidr(cls, value: str) -> str:
        return normalize_cidr(value)

    @field_validator("gw")
    @classmethod
    def _gw(cls, value: str) -> str:
        return normalize_ip(value) if value else value

    @model_validator(mode="after")
    def _shape(self) -> Self:
        if self.type == "throw":
            if self.gw or self.dev or self.mtu:
                raise ValueError(f"throw route {self.cidr}: no gw, dev or mtu")
        elif not self.gw or not self.dev:
            raise ValueError(f"route {self.cidr}: gw and dev are required")
        return self


class Iptables(Entry):
    table: Literal["nat", "filter", "mangle", "raw"] = "nat"
    chain: str
    rule: str


class Fdb(Entry):
    ip: str
    mac: str
    dev: str

    @field_validator("ip")
    @classmethod
    def _ip(cls, value: str) -> str:
        return normalize_ip(value)

    @field_validator("mac")
    @classmethod
    def _mac(cls, value: str) -> str:
        return _mac(value)


class Arp(Fdb):
    pass


class AddressMap(Entry):
    """Ours: stateless 1:1 prefix translation on one of our devices - destinations of
    arriving packets `globalCIDR` -> `cidr`, sources of leaving ones `cidr` -> `globalCIDR`.
    For Service CIDRs in globalCIDRsMap: kube-proxy must see the real ClusterIP, and a NAT
    rule (NETMAP) ahead of it would end the nat table's traversal before it does."""

    dev: str
    cidr: str
    global_cidr: str = Field(alias="globalCIDR")

    @field_validator("cidr", "global_cidr")
    @classmethod
    def _cidr(cls, value: str) -> str:
        return normalize_cidr(value)


class WireGuardPeer(Entry):
    """Ours: one remote node on a WireGuard device. Traffic to `allowedIPs` is encrypted to
    `publicKey` and sent to `endpoint`; traffic from it is accepted only from those CIDRs."""

    public_key: str
    endpoint: str  # "ip:port", "[ip6]:port": the peer's underlay address and listen port
    allowed_ips: tuple[str, ...] = Field(default=(), alias="allowedIPs")

    @field_validator("public_key")
    @classmethod
    def _key(cls, value: str) -> str:
        return check_wireguard_key(value)

    @field_validator("allowed_ips")
    @classmethod
    def _cidrs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(normalize_cidr(c) for c in value)


class WireGuardDevice(Entry):
    """Ours: a WireGuard device (the cross-cluster tunnel of an encrypted cluster). Its private
    key is the node's own (the agent's state dir), never in the NodeConfig."""

    name: str
    addr: str  # interface form, the bridge pool's prefix
    listen_port: int = Field(ge=1, le=65535)
    bind_dev: str  # the underlay NIC the endpoints are reached over (source of the tunnel)
    mtu: int = Field(default=0, ge=0, le=65535)
    peers: tuple[WireGuardPeer, ...] = ()

    @field_validator("addr")
    @classmethod
    def _addr(cls, value: str) -> str:
        try:
            return str(ipaddress.ip_interface(value))
        except ValueError:
            raise ValueError(f"{value!r} is not an ADDRESS/PREFIX") from None


class NodeConfigSpec(Model):
    devices: list[Device] = Field(default_factory=list)
    routes: list[Route] = Field(default_factory=list)
    iptables: list[Iptables] = Field(default_factory=list)
    fdbs: list[Fdb] = Field(default_factory=list)
    arps: list[Arp] = Field(default_factory=list)
    address_maps: list[AddressMap] = Field(default_factory=list)  # ours
    wireguard: list[WireGuardDevice] = Field(default_factory=list, exclude_if=operator.not_)

    def entry_count(self) -> int:
        return (
            sum(1 + len(w.peers) for w in self.wireguard)
            + len(self.devices)
            + len(self.routes)
            + len(self.iptables)
            + len(self.fdbs)
            + len(self.arps)
            + len(self.address_maps)
        )


Phase = Literal["", "Synced", "Error"]


class NodeConfigStatus(Model):
    phase: Phase = ""
    message: str = ""
    observed_generation: int | None = None
    spec_hash: str = ""
    last_sync_time: str | None = None
    last_change_time: str | None = None
    # Ours: which WireGuard runs the node's wg devices: "kernel", "wireguard-go" ("" = none).
    wireguard: str = Field(default="", exclude_if=operator.not_)


class NodeConfig(Resource):
    KIND: ClassVar[str] = "NodeConfig"
    API_VERSION: ClassVar[str] = C.API_VERSION
    PLURAL: ClassVar[str] = "nodeconfigs"

    spec: NodeConfigSpec = Field(default_factory=NodeConfigSpec)
    status: NodeConfigStatus = Field(default_factory=NodeConfigStatus)
