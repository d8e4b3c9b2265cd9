"""The `Cluster` resource: one member cluster and its ClusterLink options (Kosmos field names)."""

from __future__ import annotations

import base64
import binascii
import ipaddress
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from clusterlink import constants as C
from clusterlink.api.meta import Model, Resource
from clusterlink.api.net import cidr_sort_key, normalize_cidr, of_family
from clusterlink.inputs import InputError, load_yaml

NetworkType = Literal["p2p", "gateway"]
IPFamily = Literal["all", "ipv4", "ipv6"]
Encryption = Literal["none", "wireguard"]


def families_of(ip_family: IPFamily) -> tuple[int, ...]:
    """The address families an `ipFamily` value enables, in order (4 before 6)."""
    return {"all": (4, 6), "ipv4": (4,), "ipv6": (6,)}[ip_family]


class VxlanCIDRs(Model):
    """An address pool pair for one vx device kind (`{ip, ip6}`); an empty value disables it."""

    ip: str = ""
    ip6: str = ""

    @field_validator("ip")
    @classmethod
    def _v4(cls, value: str) -> str:
        return of_family(value, 4, "CIDR", normalize_cidr)

    @field_validator("ip6")
    @classmethod
    def _v6(cls, value: str) -> str:
        return of_family(value, 6, "CIDR", normalize_cidr)


def _bridge_default() -> VxlanCIDRs:
    return VxlanCIDRs(ip=C.DEFAULT_BRIDGE_CIDR4, ip6=C.DEFAULT_BRIDGE_CIDR6)


def _local_default() -> VxlanCIDRs:
    return VxlanCIDRs(ip=C.DEFAULT_LOCAL_CIDR4, ip6=C.DEFAULT_LOCAL_CIDR6)


class NicNodeNames(Model):
    interface_name: str
    node_name: list[str] = Field(default_factory=list)


class ClusterLinkOptions(Model):
    enable: bool = True
    cni: str = "calico"
    network_type: NetworkType = "p2p"
    ip_family: IPFamily = "all"
    use_ip_pool: bool = Field(default=False, alias="useIPPool")
    local_cidrs: VxlanCIDRs = Field(
        default_factory=_local_default,
        alias="localCIDRs",
        json_schema_extra={"default": {"ip": C.DEFAULT_LOCAL_CIDR4, "ip6": C.DEFAULT_LOCAL_CIDR6}},
    )
    bridge_cidrs: VxlanCIDRs = Field(
        default_factory=_bridge_default,
        alias="bridgeCIDRs",
        json_schema_extra={
            "default": {"ip": C.DEFAULT_BRIDGE_CIDR4, "ip6": C.DEFAULT_BRIDGE_CIDR6}
        },
    )
    nic_node_names: list[NicNodeNames] = Field(default_factory=list)
    default_nic_name: str = Field(default="*", alias="defaultNICName")
    global_cidrs_map: dict[str, str] = Field(default_factory=dict, alias="globalCIDRsMap")
    autodetection_method: str = ""
    # Ours. `wireguard`: links to clusters that also ask for it are WireGuard tunnels.
    encryption: Encryption = "none"
    # Ours. With encryption: link in plaintext (VXLAN) to clusters without it; default refuse.
    allow_plaintext: bool = False
    # Ours (flannel's DirectRouting, Calico's CrossSubnet): a P2P node reaches the pod CIDRs
    # of a node of another opted-in P2P cluster by plain routing over the underlay NIC when
    # the peer's underlay IP is on-link for it (ClusterNode `onLinkCIDRs`), by VXLAN otherwise.
    direct_routing: bool = False

    @field_validator("global_cidrs_map")
    @classmethod
    def _global_map(cls, value: dict[str, str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for real, glob in value.items():
            r, g = normalize_cidr(real), normalize_cidr(glob)
            nr, ng = ipaddress.ip_network(r), ipaddress.ip_network(g)
            if nr.version != ng.version:
                raise ValueError(
                    f"{real} -> {glob}: real and global CIDRs are of different families"
                )
            if nr.prefixlen != ng.prefixlen:
                raise ValueError(
                    f"{real} -> {glob}: a global CIDR must have the size of its real CIDR "
                    f"(/{nr.prefixlen} vs /{ng.prefixlen})"
                )
            if r in out:
                raise ValueError(f"{real}: listed twice")
            out[r] = g
        return dict(sorted(out.items()))

    @field_validator("autodetection_method")
    @classmethod
    def _autodetect(cls, value: str) -> str:
        if value and (not value.startswith("can-reach=") or not value.removeprefix("can-reach=")):
            raise ValueError(f"{value!r}: only `can-reach=<IP or host>` is supported")
        return value

    @property
    def families(self) -> tuple[int, ...]:
        return families_of(self.ip_family)


class ClusterSpec(Model):
    # Kosmos' field: the member's kubeconfig, base64. Accepted on input; the kube store keeps
    # it in a Secret instead (store/kube.py); a lab Cluster holds its handle's path here.
    kubeconfig: str | None = None
    # Ours: what the cluster is, whatever it is called or reached by - Kubernetes: the UID of
    # its kube-system Namespace (as Submariner and Cilium do); the lab: an ID in the handle.
    # Set by join; a second join of the same cluster under any name is refused.
    cluster_id: str = Field(default="", alias="clusterID")
    namespace: str = C.DEFAULT_NAMESPACE
    image_repository: str | None = None
    cluster_link_options: ClusterLinkOptions | None = None
    cluster_tree_options: dict[str, Any] | None = None  # ClusterTree's; kept, never read


class ClusterLinkStatus(Model):
    pod_cidrs: list[str] = Field(default_factory=list, alias="podCIDRs")
    service_cidrs: list[str] = Field(default_factory=list, alias="serviceCIDRs")

    @field_validator("pod_cidrs", "service_cidrs")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        return sorted({normalize_cidr(c) for c in value}, key=cidr_sort_key)


class ClusterStatus(Model):
    cluster_link_status: ClusterLinkStatus = Field(default_factory=ClusterLinkStatus)
    cluster_tree_status: dict[str, Any] | None = None


class Cluster(Resource):
    KIND: ClassVar[str] = "Cluster"
    API_VERSION: ClassVar[str] = C.API_VERSION
    PLURAL: ClassVar[str] = "clusters"

    spec: ClusterSpec = Field(default_factory=ClusterSpec)
    status: ClusterStatus = Field(default_factory=ClusterStatus)

    @property
    def link(self) -> ClusterLinkOptions | None:
        return self.spec.cluster_link_options


def kubeconfig_text(raw: str | None) -> str | None:
    """The kubeconfig a `spec.kubeconfig` value carries (base64 of a YAML mapping with
    `clusters`, as Kosmos writes it); None for anything else (a lab handle's path, garbage)."""
    if not raw:
        return None
    try:
        text = base64.b64decode(raw, validate=True).decode()
        data: Any = load_yaml(text, "spec.kubeconfig")
    except (binascii.Error, UnicodeDecodeError, InputError):
        return None
    return text if isinstance(data, dict) and "clusters" in data else None


REDACTED = "<redacted>"


def without_credentials(data: dict[str, Any]) -> dict[str, Any]:
    """A Cluster's dict with a kubeconfig in `spec.kubeconfig` shown as `<redacted>` (a lab
    handle's path stays); other kinds unchanged. What `get -o json|yaml` prints."""
    spec = data.get("spec")
    if data.get("kind") != "Cluster" or not isinstance(spec, dict):
        return data
    if kubeconfig_text(spec.get("kubeconfig")) is None:
        return data
    return {**data, "spec": {**spec, "kubeconfig": REDACTED}}
