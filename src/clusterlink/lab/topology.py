"""The topology file (`kosmosctl lab up -f`), and the lab's address plan derived from it.

Everything here is pure: the same file gives the same namespaces and addresses.

Address plan for the i-th cluster (1-based, file order), node j, pod k:
- underlay segment 192.168.i.0/24 and fd00:i::/64 (hex i); node j is .j / ::j, the fabric
  router .254 / ::fe; all segments share one bridge and reach each other on-link;
- pods (defaults) 10.i.0.0/16 and fd10:i::/48, one block per node (10.i.j.0/24,
  fd10:i:j::/64) whose first address is the node's cni0 bridge and pod k gets the (k+1)-th;
- services (defaults) 10.(100+i).0.0/16 and fd20:i::/108; the k-th Service (0-based) of a
  cluster gets the (10+k)-th address of each service CIDR as its ClusterIPs.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Literal, Self

from pydantic import Field, field_validator, model_validator

from clusterlink.api.cluster import ClusterLinkOptions, IPFamily
from clusterlink.api.meta import Model, validate_dns1123
from clusterlink.api.net import normalize_cidr

_LAB_NAME = re.compile(r"^[a-z][a-z0-9]{0,11}$")
MAX_CLUSTERS = 250
MAX_NODES = 250
MAX_LAB_NODES = 1000


Cni = Literal["calico", "flannel"]
# bridged: nodes reach every other cluster's segment on-link (one L2, the default); routed:
# only their own, the rest via the fabric router - a peer behind a gateway (directRouting's
# VXLAN fallback)
Underlay = Literal["bridged", "routed"]
_POD_REF = re.compile(r"^n([1-9][0-9]*)/p([1-9][0-9]*)$")
FIRST_CLUSTER_IP = 10  # offset of the first ClusterIP in each service CIDR


class JoinOptions(ClusterLinkOptions):
    """How `kosmosctl lab demo` (and the e2e tests) join this cluster: any field of a Cluster's
    `spec.clusterLinkOptions` (globalCIDRsMap, bridgeCIDRs, ...), networkType defaulting to
    p2p and ipFamily to the cluster's own."""

    ip_family: IPFamily | None = None  # type: ignore[assignment]

    def link_fields(self) -> dict[str, Any]:
        """The fields given besides networkType and ipFamily, as clusterLinkOptions JSON."""
        return self.model_dump(
            mode="json",
            by_alias=True,
            exclude_defaults=True,
            exclude={"network_type", "ip_family", "cni", "enable"},  # cni: the cluster's own
        )


class ServiceTopology(Model):
    """A Service as kube-proxy's iptables mode programs it: TCP `port` on a ClusterIP per
    family, DNAT to the same port of a backend chosen at random."""

    name: str
    port: int = Field(ge=1, le=65535)
    pods: list[str] = Field(min_length=1)  # backends, as "nJ/pK"

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        validate_dns1123(value)
        if "." in value:
            raise ValueError(f"{value!r}: a Service name is a DNS label")
        return value

    @field_validator("pods")
    @classmethod
    def _pods(cls, value: list[str]) -> list[str]:
        for ref in value:
            if not _POD_REF.match(ref):
                raise ValueError(f"{ref!r}: a backend is NODE/POD, e.g. n1/p1")
        if len(set(value)) != len(value):
            raise ValueError("a backend is listed twice")
        return value


class ClusterTopology(Model):
    name: str
    nodes: int = Field(default=2, ge=1, le=MAX_NODES)
    ip_family: IPFamily = "ipv4"
    pod_cidrs: list[str] = Field(default_factory=list, alias="podCIDRs")
    service_cidrs: list[str] = Field(default_factory=list, alias="serviceCIDRs")
    gateway_candidates: int | None = Field(default=None, ge=1)
    isolated: bool = False
    pods_per_node: int = Field(default=1, ge=0, le=200)
    mtu: int = Field(default=1500, ge=1280, le=9000)
    cni: Cni = "calico"
    underlay: Underlay = "bridged"
    services: list[ServiceTopology] = Field(default_factory=list)
    join: JoinOptions = Field(default_factory=JoinOptions)
    # Seconds added to the wall clock of a node's components (nodes share the host's clock;
    # this emulates one that is off): {n2: 30}.
    clock_skew: dict[str, float] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        validate_dns1123(value)
        if "." in value or len(value) > 30:
            raise ValueError(
                f"{value!r}: a lab cluster name is a DNS label of at most 30 characters"
            )
        return value

    @field_validator("pod_cidrs", "service_cidrs")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        return [normalize_cidr(c) for c in value]

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.gateway_candidates is not None and self.gateway_candidates > self.nodes:
            raise ValueError(
                f"gatewayCandidates ({self.gateway_candidates}) exceeds nodes ({self.nodes})"
            )
        for skewed in self.clock_skew:
            match = re.fullmatch(r"n([1-9][0-9]*)", skewed)
            if match is None or int(match.group(1)) > self.nodes:
                raise ValueError(f"clockSkew: no node {skewed!r} (nodes are n1..n{self.nodes})")
        names: set[str] = set()
        for svc in self.services:
            if svc.name in names:
                raise ValueError(f"Service {svc.name!r} is listed twice")
            names.add(svc.name)
            for ref in svc.pods:
                m = _POD_REF.match(ref)
                assert m is not None
                node, pod = int(m.group(1)), int(m.group(2))
                if node > self.nodes or pod > self.pods_per_node:
                    raise ValueError(
                        f"Service {svc.name}: no pod {ref} ({self.nodes} nodes, "
                        f"{self.pods_per_node} pods per node)"
                    )
        return self

    @property
    def families(self) -> tuple[int, ...]:
        return {"all": (4, 6), "ipv4": (4,), "ipv6": (6,)}[self.ip_family]

    @property
    def candidates(self) -> int:
        return (
            self.gateway_candidates if self.gateway_candidates is not None else min(2, self.nodes)
        )


class Topology(Model):
    name: str
    clusters: list[ClusterTopology] = Field(min_length=1, max_length=MAX_CLUSTERS)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _LAB_NAME.match(value):
            raise ValueError(
                f"{value!r}: a lab name is 1-12 lowercase letters and digits, starting with a "
                "letter (it prefixes every namespace: cl-<lab>-...)"
            )
        return value

    @model_validator(mode="after")
    def _unique(self) -> Self:
        nodes = sum(c.nodes for c in self.clusters)
        if nodes > MAX_LAB_NODES:
            raise ValueError(
                f"{nodes} nodes: a lab holds at most {MAX_LAB_NODES} (one fabric bridge, 1,024 ports)"
            )
        seen: set[str] = set()
        for c in self.clusters:
            if c.name in seen:
                raise ValueError(f"cluster {c.name!r} is listed twice")
            if c.name == "fabric":
                raise ValueError("'fabric' is reserved (the lab's router namespace)")
            seen.add(c.name)
        return self


# -- the plan -------------------------------------------------------------------------------


class PodPlan(Model):
    name: str
    node: str
    netns: str
    ip: str | None
    ip6: str | None

    def ref(self, cluster: str) -> str:
        """The pod as `lab exec` names it: CLUSTER/NODE/POD, e.g. c1/n1/p1."""
        return f"{cluster}/{self.node}/{self.name.removeprefix(self.node + '-')}"


class NodePlan(Model):
    name: str
    netns: str
    ip: str | None
    ip6: str | None
    gateway_candidate: bool
    pod_cidrs: list[str] = Field(alias="podCIDRs")
    fabric_port: str  # the veth end in the fabric namespace
    clock_skew: float = 0.0  # seconds added to its components' wall clock


class ServicePlan(Model):
    name: str
    port: int
    ips: list[str]  # ClusterIPs, IPv4 first
    backends: list[str]  # pod names, e.g. "n1-p1"


class ClusterPlan(Model):
    name: str
    index: int
    ip_family: IPFamily
    families: list[int]
    isolated: bool
    mtu: int
    cni: Cni = "calico"
    underlay: Underlay = "bridged"
    services: list[ServicePlan] = Field(default_factory=list)
    segment: dict[str, str]  # "4"/"6" -> underlay CIDR
    router: dict[str, str]  # "4"/"6" -> the fabric's address on the segment
    pod_cidrs: list[str] = Field(alias="podCIDRs")
    service_cidrs: list[str] = Field(alias="serviceCIDRs")
    join: JoinOptions
    nodes: list[NodePlan]
    pods: list[PodPlan]


class LabPlan(Model):
    name: str
    fabric_netns: str
    clusters: list[ClusterPlan]

    def namespaces(self) -> list[str]:
        out = [self.fabric_netns]
        for c in self.clusters:
            out += [n.netns for n in c.nodes] + [p.netns for p in c.pods]
        return out

    def cluster(self, name: str) -> ClusterPlan:
        for c in self.clusters:
            if c.name == name:
                return c
        raise KeyError(name)


def _blocks(cidr: str, count: int, family: int) -> list[str]:
    net = ipaddress.ip_network(cidr)
    want = 24 if family == 4 else 64
    if net.prefixlen > want - 4:
        want = net.prefixlen + (4 if family == 4 else 8)
    if want > (30 if family == 4 else 120):
        raise ValueError(f"{cidr} is too small to give each node a pod block")
    subnets = net.subnets(new_prefix=want)
    blocks = []
    for _ in range(count + 1):  # block 0 is left unused, so node j gets block j
        try:
            blocks.append(str(next(subnets)))
        except StopIteration:
            raise ValueError(
                f"{cidr} has room for fewer than {count} node blocks of /{want}"
            ) from None
    return blocks[1:]


def _cluster_ips(cluster: str, service_cidrs: list[str], count: int) -> list[list[str]]:
    """Per service CIDR (IPv4 first), the ClusterIPs of `count` Services."""
    out = []
    for cidr in sorted(service_cidrs, key=lambda c: ":" in c):
        net = ipaddress.ip_network(cidr)
        if count and net.num_addresses < FIRST_CLUSTER_IP + count + 1:
            raise ValueError(f"cluster {cluster}: {cidr} is too small for {count} Services")
        out.append([str(net[FIRST_CLUSTER_IP + k]) for k in range(count)])
    return out


def plan_lab(topo: Topology) -> LabPlan:
    clusters = []
    for i, c in enumerate(topo.clusters, start=1):
        fams = c.families
        pods = c.pod_cidrs or [
            p for f, p in ((4, f"10.{i}.0.0/16"), (6, f"fd10:{i:x}::/48")) if f in fams
        ]
        services = c.service_cidrs or [
            s for f, s in ((4, f"10.{100 + i}.0.0/16"), (6, f"fd20:{i:x}::/108")) if f in fams
        ]
        for f in fams:
            if not any((":" in p) == (f == 6) for p in pods):
                raise ValueError(
                    f"cluster {c.name}: ipFamily {c.ip_family} needs an IPv{f} pod CIDR"
                )
        per_family = {
            f: _blocks(next(p for p in pods if (":" in p) == (f == 6)), c.nodes, f) for f in fams
        }
        segment = {
            str(f): s for f, s in ((4, f"192.168.{i}.0/24"), (6, f"fd00:{i:x}::/64")) if f in fams
        }
        router = {
            str(f): a for f, a in ((4, f"192.168.{i}.254"), (6, f"fd00:{i:x}::fe")) if f in fams
        }
        nodes, pod_plans = [], []
        for j in range(1, c.nodes + 1):
            name = f"n{j}"
            netns = f"cl-{topo.name}-{c.name}-{name}"
            blocks = [per_family[f][j - 1] for f in fams]
            nodes.append(
                NodePlan(
                    name=name,
                    netns=netns,
                    ip=f"192.168.{i}.{j}" if 4 in fams else None,
                    ip6=f"fd00:{i:x}::{j:x}" if 6 in fams else None,
                    gateway_candidate=j <= c.candidates,
                    pod_cidrs=blocks,
                    fabric_port=f"c{i}n{j}",
                    clock_skew=c.clock_skew.get(name, 0.0),
                )
            )
            for k in range(1, c.pods_per_node + 1):
                addr = {f: str(ipaddress.ip_network(per_family[f][j - 1])[k + 1]) for f in fams}
                pod_plans.append(
                    PodPlan(
                        name=f"{name}-p{k}",
                        node=name,
                        netns=f"{netns}-p{k}",
                        ip=addr.get(4),
                        ip6=addr.get(6),
                    )
                )
        cluster_ips = _cluster_ips(c.name, services, len(c.services))
        service_plans = [
            ServicePlan(
                name=svc.name,
                port=svc.port,
                ips=[ips[k] for ips in cluster_ips],
                backends=[ref.replace("/", "-") for ref in svc.pods],
            )
            for k, svc in enumerate(c.services)
        ]
        clusters.append(
            ClusterPlan(
                name=c.name,
                index=i,
                ip_family=c.ip_family,
                families=list(fams),
                isolated=c.isolated,
                mtu=c.mtu,
                cni=c.cni,
                underlay=c.underlay,
                services=service_plans,
                segment=segment,
                router=router,
                pod_cidrs=pods,
                service_cidrs=services,
                join=c.join.model_copy(update={"ip_family": c.join.ip_family or c.ip_family}),
                nodes=nodes,
                pods=pod_plans,
            )
        )
    return LabPlan(name=topo.name, fabric_netns=f"cl-{topo.name}-fabric", clusters=clusters)
