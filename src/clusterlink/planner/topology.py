"""The planner's view of its input: enabled clusters, usable nodes, gateways - and findings
for everything left out or adjusted."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from clusterlink import constants as C
from clusterlink.api.cluster import Cluster, NetworkType
from clusterlink.api.clusternode import ClusterNode
from clusterlink.api.net import cidr_family, cidr_sort_key
from clusterlink.planner.findings import Finding


@dataclass(frozen=True, slots=True)
class ClusterView:
    name: str
    mode: NetworkType
    cni: str  # lower case: "calico", "flannel", ...
    families: tuple[int, ...]
    bridge_pool: dict[int, str]  # family -> CIDR ("" = that family's device is disabled)
    local_pool: dict[int, str]
    pod_cidrs: tuple[str, ...]  # what a gateway-mode cluster advertises
    service_cidrs: tuple[str, ...]
    global_map: dict[str, str]  # real -> global
    # Everything routed inside the cluster: remote CIDRs overlapping it are skipped.
    local_cidrs: tuple[str, ...]
    encrypted: bool = False  # encryption: wireguard
    allow_plaintext: bool = False  # links to clusters without encryption run in VXLAN
    direct_routing: bool = False  # opted in (planner/direct.py decides where it applies)


@dataclass(frozen=True, slots=True)
class NodeView:
    name: str  # ClusterNode name = NodeConfig name
    cluster: str
    node: str
    ips: dict[int, str]  # family -> underlay address, only families the node takes part in
    interface: str
    # The underlay MTU the tunnels see: a node of an encrypted cluster counts WireGuard's
    # extra overhead against it (`effective_mtu`), so every device and path MTU rule holds.
    mtu: int
    pod_cidrs: tuple[str, ...]
    public_key: str = ""  # WireGuard
    on_link: tuple[str, ...] = ()  # underlay prefixes reached without a gateway (directRouting)


@dataclass(slots=True)
class FederationView:
    clusters: dict[str, ClusterView]
    nodes: dict[str, NodeView]  # sorted by name
    gateway: dict[str, str]  # cluster -> its gateway node's name
    # cluster -> the node that receives remote Service traffic: the gateway; in a P2P cluster
    # without one (Kubernetes runs no elector for P2P by default) the first node by name.
    service_node: dict[str, str]
    members: dict[str, list[str]]  # cluster -> node names, sorted
    findings: list[Finding] = field(default_factory=list)

    def in_bridge_set(self, node: NodeView) -> bool:
        """Gateways of every cluster and every node of a P2P cluster own vx-bridge."""
        cluster = self.clusters[node.cluster]
        return cluster.mode == "p2p" or self.gateway.get(node.cluster) == node.name


def cluster_view(cluster: Cluster, nodes: list[ClusterNode]) -> ClusterView:
    link = cluster.link
    assert link is not None
    status = cluster.status.cluster_link_status
    node_blocks = {c for n in nodes for c in n.spec.pod_cidrs}
    local = set(status.pod_cidrs) | set(status.service_cidrs) | node_blocks
    local |= set(link.global_cidrs_map.values())
    return ClusterView(
        name=cluster.name,
        mode=link.network_type,
        cni=link.cni.lower(),
        families=link.families,
        bridge_pool={4: link.bridge_cidrs.ip, 6: link.bridge_cidrs.ip6},
        local_pool={4: link.local_cidrs.ip, 6: link.local_cidrs.ip6},
        pod_cidrs=tuple(status.pod_cidrs),
        service_cidrs=tuple(status.service_cidrs),
        global_map=dict(link.global_cidrs_map),
        local_cidrs=tuple(sorted(local, key=cidr_sort_key)),
        encrypted=link.encryption == "wireguard",
        allow_plaintext=link.allow_plaintext,
        direct_routing=link.direct_routing,
    )


def effective_mtu(underlay_mtu: int, encrypted: bool) -> int:
    """The MTU the planner counts a node's underlay at. WireGuard costs 10 bytes more than
    VXLAN in both families (60 vs 50 over IPv4, 80 vs 70 over IPv6), so an encrypted node's
    underlay counts 10 bytes smaller: its wg device gets MTU - 60 / - 80, path MTUs toward it
    follow by the VXLAN rules, and every other device of the node is 10 bytes conservative."""
    shift = C.WG_OVERHEAD[4] - C.VXLAN_OVERHEAD[4]
    assert shift == C.WG_OVERHEAD[6] - C.VXLAN_OVERHEAD[6]
    return underlay_mtu - shift if encrypted else underlay_mtu


def build_topology(
    clusters: Iterable[Cluster], cluster_nodes: Iterable[ClusterNode]
) -> FederationView:
    findings: list[Finding] = []
    by_cluster: dict[str, list[ClusterNode]] = {}
    for cn in sorted(cluster_nodes, key=lambda n: n.name):
        by_cluster.setdefault(cn.spec.cluster_name, []).append(cn)

    views: dict[str, ClusterView] = {}
    for cluster in sorted(clusters, key=lambda c: c.name):
        obj = f"Cluster/{cluster.name}"
        if cluster.link is None:
            findings.append(Finding("info", obj, "no clusterLinkOptions: not linked"))
        elif not cluster.link.enable:
            findings.append(Finding("info", obj, "clusterLinkOptions.enable is false: not linked"))
        else:
            views[cluster.name] = cluster_view(cluster, by_cluster.get(cluster.name, []))

    nodes: dict[str, NodeView] = {}
    gateway_candidates: dict[str, list[str]] = {}
    for cluster_name, members in sorted(by_cluster.items()):
        for cn in members:
            node = node_view(cn, views.get(cluster_name), findings)
            if node is None:
                continue
            nodes[node.name] = node
            if cn.spec.is_gateway:
                gateway_candidates.setdefault(cluster_name, []).append(node.name)

    members_of: dict[str, list[str]] = {name: [] for name in views}
    for node in nodes.values():
        members_of[node.cluster].append(node.name)
    gateway: dict[str, str] = {}
    others: dict[str, str] = {}  # service nodes of P2P clusters without a gateway
    for name, view in views.items():
        gw, service, more = cluster_roles(view, members_of[name], gateway_candidates.get(name, []))
        findings += more
        if gw is not None:
            gateway[name] = gw
        elif service is not None:
            others[name] = service
    service_node = gateway | others
    return FederationView(views, nodes, gateway, service_node, members_of, findings)


def cluster_roles(
    view: ClusterView, members: list[str], candidates: list[str]
) -> tuple[str | None, str | None, list[Finding]]:
    """(gateway, service node, findings) of a cluster from its usable nodes (`members`,
    sorted) and those of them with role gateway (`candidates`, sorted)."""
    findings: list[Finding] = []
    obj = f"Cluster/{view.name}"
    gateway = candidates[0] if candidates else None
    if len(candidates) > 1:
        findings.append(
            Finding(
                "warning",
                obj,
                f"{len(candidates)} nodes have role gateway ({', '.join(candidates)}); "
                f"using {candidates[0]}",
            )
        )
    if gateway is not None:
        return gateway, gateway, findings
    if view.mode == "gateway" and members:
        findings.append(
            Finding(
                "warning",
                obj,
                "gateway mode but no node has role gateway: the cluster is not connected",
            )
        )
    if view.mode == "p2p" and members:
        if view.service_cidrs:
            findings.append(
                Finding(
                    "info",
                    obj,
                    f"no node has role gateway: remote Service traffic goes to "
                    f"{members[0]} (the first node by name)",
                )
            )
        return None, members[0], findings
    return None, None, findings


def node_view(
    cn: ClusterNode, cluster: ClusterView | None, findings: list[Finding]
) -> NodeView | None:
    """The planner's view of one ClusterNode (None: left out, `findings` gets why)."""
    obj = f"ClusterNode/{cn.name}"
    spec = cn.spec
    if not spec.cluster_name:
        findings.append(Finding("warning", obj, "spec.clusterName is empty: left out"))
        return None
    if cluster is None:
        findings.append(
            Finding("info", obj, f"cluster {spec.cluster_name} is missing or not linked: left out")
        )
        return None
    if not spec.interface_name:
        findings.append(
            Finding("warning", obj, "spec.interfaceName is empty (not detected yet): left out")
        )
        return None
    have = {4: spec.ip, 6: spec.ip6}
    ips = {f: have[f] for f in cluster.families if have[f]}
    missing = [f for f in cluster.families if not have[f]]
    if not ips:
        wanted = " and ".join("ip" if f == 4 else "ip6" for f in cluster.families)
        findings.append(
            Finding("warning", obj, f"no {wanted} for ipFamily of the cluster: left out")
        )
        return None
    if missing:
        lacking = ", ".join(f"IPv{f}" for f in missing)
        findings.append(
            Finding("warning", obj, f"has no {lacking} address: planned for the families it has")
        )
    pod_cidrs = tuple(c for c in spec.pod_cidrs if cidr_family(c) in ips)
    return NodeView(
        name=cn.name,
        cluster=spec.cluster_name,
        node=spec.node_name or cn.name,
        ips=ips,
        interface=spec.interface_name,
        mtu=effective_mtu(spec.mtu or C.DEFAULT_UNDERLAY_MTU, cluster.encrypted),
        pod_cidrs=pod_cidrs,
        public_key=spec.wireguard_public_key,
        on_link=tuple(spec.on_link_cidrs) if cluster.direct_routing else (),
    )
