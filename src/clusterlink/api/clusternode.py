"""The `ClusterNode` resource: one node of a member cluster as the planner sees it."""

from __future__ import annotations

import base64
import binascii
from typing import ClassVar

from pydantic import Field, field_validator

from clusterlink import constants as C
from clusterlink.api.meta import Model, Resource
from clusterlink.api.net import cidr_sort_key, normalize_cidr, normalize_ip, of_family


class ClusterNodeSpec(Model):
    cluster_name: str = ""
    node_name: str = ""
    pod_cidrs: list[str] = Field(default_factory=list, alias="podCIDRs")
    ip: str = ""
    ip6: str = ""
    roles: list[str] = Field(default_factory=list)
    interface_name: str = ""
    # Ours, optional: the underlay NIC's MTU as the agent saw it (vx device MTU is derived from it).
    mtu: int | None = Field(default=None, ge=1280, le=65535)
    # Ours: the node's WireGuard public key (base64), published by its agent; the private key
    # never leaves the node. Empty until the agent has started once.
    wireguard_public_key: str = ""

    @field_validator("wireguard_public_key")
    @classmethod
    def _wg_key(cls, value: str) -> str:
        return check_wireguard_key(value) if value else value

    # Ours, filled by the agent when its cluster has directRouting: the underlay prefixes its
    # kernel routes on interfaceName without a gateway (main table; more specific routes
    # elsewhere cut out). A peer whose underlay IP lies inside is reached by plain routing.
    on_link_cidrs: list[str] = Field(default_factory=list, alias="onLinkCIDRs")

    @field_validator("pod_cidrs", "on_link_cidrs")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        return sorted({normalize_cidr(c) for c in value}, key=cidr_sort_key)

    @field_validator("ip")
    @classmethod
    def _ip4(cls, value: str) -> str:
        return of_family(value, 4, "address", normalize_ip)

    @field_validator("ip6")
    @classmethod
    def _ip6(cls, value: str) -> str:
        return of_family(value, 6, "address", normalize_ip)

    @property
    def is_gateway(self) -> bool:
        return any(role.lower() == C.GATEWAY_ROLE for role in self.roles)


def check_wireguard_key(value: str) -> str:
    """A WireGuard key as wg(8) prints it: 32 bytes, base64."""
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        raise ValueError(f"{value!r} is not a WireGuard key (32 bytes, base64)")
    return value


class ClusterNode(Resource):
    KIND: ClassVar[str] = "ClusterNode"
    API_VERSION: ClassVar[str] = C.API_VERSION
    PLURAL: ClassVar[str] = "clusternodes"

    spec: ClusterNodeSpec = Field(default_factory=ClusterNodeSpec)
    status: dict[str, str] = Field(default_factory=dict)  # Kosmos keeps it empty


def cluster_node_name(cluster: str, node: str) -> str:
    """Kosmos' naming rule: a ClusterNode (and its NodeConfig) is `<cluster>-<node>`."""
    return f"{cluster}-{node}"
