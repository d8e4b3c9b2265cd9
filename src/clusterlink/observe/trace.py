"""`kosmosctl trace SRC DST`: the hops a packet takes from SRC to DST, each with what the
NodeConfig says and, where the node is reachable (the lab), what its kernel says (`ip route
get` in its namespace, its FDB and neighbours). A broken path stops at the first bad hop and
names the cause.

The walk is pure over the store's objects (`walk`); the kernel is read through `KernelPort`
(`LabKernels` in the lab, `NoKernels` elsewhere)."""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal, Protocol

from clusterlink import constants as C
from clusterlink.api.cluster import Cluster
from clusterlink.api.clusternode import ClusterNode, cluster_node_name
from clusterlink.api.nodeconfig import NodeConfig
from clusterlink.errors import BadInput, ClusterlinkError
from clusterlink.kube.deploy import member_kubeconfig_of
from clusterlink.kubeclient.api import KubeApi
from clusterlink.kubeclient.errors import ApiNotFound
from clusterlink.kubeclient.target import Target
from clusterlink.lab.state import LabError, is_lab_handle, load_handle, load_plan
from clusterlink.planner import plan
from clusterlink.planner.findings import Finding
from clusterlink.store.base import Store
from clusterlink.store.kube import KubeStore

Cause = Literal[
    "no route",
    "CIDR skipped for overlap",
    "family not enabled",
    "node not synced",
    "gateway missing",
    "drift",
    "encryption mismatch",
]
K8S_NAME = re.compile(r"[a-z0-9]([-.a-z0-9]{0,251}[a-z0-9])?")
MAX_HOPS = 8  # a path crosses at most internal node -> gateway -> gateway -> internal node


@dataclass(frozen=True)
class Endpoint:
    text: str  # as the user wrote it
    ip: str  # the address traced (SRC: the packet's source; DST: its destination)
    node: str | None  # the ClusterNode holding it (None: an address nobody owns)


@dataclass(frozen=True)
class Seen:
    """A route as the kernel resolves it (`ip route get`)."""

    dev: str
    via: str | None
    table: str | None


@dataclass(frozen=True)
class Hop:
    node: str
    step: str  # synced, route, fdb, deliver
    config: str  # what the NodeConfig (or the federation) says
    kernel: str | None = None  # what the live kernel says; None: not read
    cause: Cause | None = None
    detail: str = ""


@dataclass(frozen=True)
class Trace:
    src: Endpoint
    dst: Endpoint
    hops: list[Hop] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return bool(self.hops) and self.hops[-1].step == "deliver" and not self.broken

    @property
    def broken(self) -> Hop | None:
        return next((h for h in self.hops if h.cause), None)

    def to_dict(self) -> dict[str, object]:
        bad = self.broken
        return {
            "src": asdict(self.src),
            "dst": asdict(self.dst),
            "complete": self.complete,
            "cause": bad.cause if bad else None,
            "brokenAt": f"{bad.node} {bad.step}" if bad else None,
            "hops": [asdict(h) for h in self.hops],
        }


class KernelPort(Protocol):
    def route_get(self, node: str, dst: str) -> Seen | str | None:
        """The kernel's route to dst on node; a string: why there is none; None: unreadable."""
        ...

    def fdb_has(self, node: str, dev: str, mac: str, dst: str) -> bool | None: ...

    def neigh_has(self, node: str, dev: str, ip: str, mac: str) -> bool | None: ...


class NoKernels:
    """No node is reachable: hops show the NodeConfig only."""

    def route_get(self, node: str, dst: str) -> Seen | str | None:
        return None

    def fdb_has(self, node: str, dev: str, mac: str, dst: str) -> bool | None:
        return None

    def neigh_has(self, node: str, dev: str, ip: str, mac: str) -> bool | None:
        return None


def _ip(node_netns: dict[str, str], node: str, *args: str) -> tuple[int, str]:
    proc = subprocess.run(
        ["ip", "-n", node_netns[node], *args], capture_output=True, text=True, check=False
    )
    return proc.returncode, (proc.stdout if proc.returncode == 0 else proc.stderr).strip()


class LabKernels:
    """Lab nodes' kernels, read with `ip`/`bridge` inside their namespaces (read only)."""

    def __init__(self, node_netns: dict[str, str]) -> None:
        self.netns = node_netns  # ClusterNode name -> namespace

    def route_get(self, node: str, dst: str) -> Seen | str | None:
        if node not in self.netns:
            return None
        code, out = _ip(self.netns, node, "-j", "route", "get", dst)
        if code != 0:
            return out.removeprefix("RTNETLINK answers: ") or "no route"
        (route,) = json.loads(out)[:1] or [{}]
        if route.get("type") in ("unreachable", "prohibit", "blackhole"):
            return str(route["type"])
        return Seen(route.get("dev", ""), route.get("gateway"), route.get("table"))

    def fdb_has(self, node: str, dev: str, mac: str, dst: str) -> bool | None:
        if node not in self.netns:
            return None
        proc = subprocess.run(
            ["bridge", "-n", self.netns[node], "-j", "fdb", "show", "dev", dev],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            return False
        entries = json.loads(proc.stdout or "[]")
        return any(e.get("mac") == mac and e.get("dst") == dst for e in entries)

    def neigh_has(self, node: str, dev: str, ip: str, mac: str) -> bool | None:
        if node not in self.netns:
            return None
        code, out = _ip(self.netns, node, "-j", "neigh", "show", ip, "dev", dev)
        if code != 0:
            return False
        return any(n.get("lladdr") == mac for n in json.loads(out or "[]"))


@dataclass(frozen=True)
class Federation:
    """What the walk reads, read once."""

    clusters: dict[str, Cluster]
    nodes: dict[str, ClusterNode]
    configs: dict[str, NodeConfig]
    findings: Sequence[Finding]

    @classmethod
    def read(cls, store: Store) -> Federation:
        clusters = {c.name: c for c in store.list(Cluster)}
        nodes = {n.name: n for n in store.list(ClusterNode)}
        current = plan(list(clusters.values()), list(nodes.values()))
        configs = {nc.name: nc for nc in store.list(NodeConfig)}
        return cls(clusters, nodes, configs, current.findings)

    def owner_of(self, ip: str) -> str | None:
        """The ClusterNode whose pod CIDRs hold ip (the longest match)."""
        addr = ipaddress.ip_address(ip)
        best: tuple[int, str] | None = None
        for cn in self.nodes.values():
            for cidr in cn.spec.pod_cidrs:
                net = ipaddress.ip_network(cidr)
                inside = addr.version == net.version and addr in net
                if inside and (best is None or net.prefixlen > best[0]):
                    best = (net.prefixlen, cn.name)
        return best[1] if best else None

    def device_owner(self, dev: str, ip: str) -> str | None:
        for nc in self.configs.values():
            addrs = [d.addr for d in nc.spec.devices if d.name == dev]
            addrs += [w.addr for w in nc.spec.wireguard if w.name == dev]
            if any(str(ipaddress.ip_interface(a).ip) == ip for a in addrs):
                return nc.name
        return None

    def same_cluster(self, a: str, b: str) -> bool:
        na, nb = self.nodes.get(a), self.nodes.get(b)
        return bool(na and nb and na.spec.cluster_name == nb.spec.cluster_name)

    def gateway_of(self, cluster: str) -> str | None:
        for cn in self.nodes.values():
            if cn.spec.cluster_name == cluster and cn.spec.is_gateway:
                return cn.name
        return None


def _family_cause(fed: Federation, node: str, dst: Endpoint) -> Hop | None:
    version = ipaddress.ip_address(dst.ip).version
    for name in (node, dst.node):
        cn = fed.nodes.get(name or "")
        cluster = fed.clusters.get(cn.spec.cluster_name) if cn else None
        if cluster is None or cluster.link is None:
            continue
        if version not in cluster.link.families:
            return Hop(
                node,
                "family",
                f"{cluster.name}: ipFamily {cluster.link.ip_family}",
                cause="family not enabled",
                detail=f"IPv{version} is not enabled in cluster {cluster.name}",
            )
    return None


def _gateway_cause(fed: Federation, node: str, dst: Endpoint) -> Hop | None:
    for name in (node, dst.node):
        cn = fed.nodes.get(name or "")
        cluster = fed.clusters.get(cn.spec.cluster_name) if cn else None
        gateway_mode = cluster and cluster.link and cluster.link.network_type == "gateway"
        if cluster and gateway_mode and fed.gateway_of(cluster.name) is None:
            return Hop(
                node,
                "gateway",
                f"{cluster.name}: gateway mode",
                cause="gateway missing",
                detail=f"no ClusterNode of {cluster.name} has the gateway role",
            )
    return None


def _encryption_cause(fed: Federation, node: str, dst: Endpoint) -> Hop | None:
    """The planner refused to link node's cluster and dst's: one asks for encryption, the other
    does not, and plaintext is not allowed (its warning on node's cluster says so)."""
    here, there = fed.nodes.get(node), fed.nodes.get(dst.node or "")
    if here is None or there is None:
        return None
    mine, other = here.spec.cluster_name, there.spec.cluster_name
    for f in fed.findings:
        if f.level != "warning" or f.object != f"Cluster/{mine}":
            continue
        asks = f.message.startswith("asks for encryption") and f" but {other} does not" in f.message
        if asks or f.message.startswith(f"{other} asks for encryption"):
            cluster = fed.clusters.get(mine)
            mode = cluster.link.encryption if cluster and cluster.link else "none"
            return Hop(
                node,
                "encryption",
                f"{mine}: encryption {mode}",
                cause="encryption mismatch",
                detail=f.message,
            )
    return None


def _no_route(fed: Federation, node: str, dst: Endpoint) -> Hop:
    cn = fed.nodes[node]
    addr = ipaddress.ip_address(dst.ip)
    for f in fed.findings:
        if f.object != f"Cluster/{cn.spec.cluster_name}" or "overlaps" not in f.message:
            continue
        cidr = f.message.split()[0]
        net = ipaddress.ip_network(cidr)
        if net.version == addr.version and addr in net:
            return Hop(
                node,
                "route",
                f"no table-{C.ROUTE_TABLE} route to {dst.ip}",
                cause="CIDR skipped for overlap",
                detail=f.message,
            )
    return Hop(
        node,
        "route",
        f"no table-{C.ROUTE_TABLE} route to {dst.ip}",
        cause="no route",
        detail=f"the NodeConfig of {node} routes no CIDR holding {dst.ip}",
    )


def _route_of(nc: NodeConfig, ip: str) -> tuple[str, str, str] | None:
    addr = ipaddress.ip_address(ip)
    best = None
    for r in nc.spec.routes:
        net = ipaddress.ip_network(r.cidr)
        inside = net.version == addr.version and addr in net
        if inside and (best is None or net.prefixlen > ipaddress.ip_network(best.cidr).prefixlen):
            best = r
    # A throw route ends the lookup in table 200: the main table (the CNI) decides.
    return (best.cidr, best.gw, best.dev) if best and not best.is_throw else None


def _synced(fed: Federation, node: str) -> Hop:
    nc = fed.configs.get(node)
    if nc is None:
        return Hop(
            node,
            "synced",
            "no NodeConfig",
            cause="node not synced",
            detail=f"the network-manager wrote no NodeConfig for {node}",
        )
    gen, seen = nc.metadata.generation, nc.status.observed_generation
    config = f"NodeConfig generation {gen}, agent applied {seen}, {nc.status.phase or 'no status'}"
    if seen != gen or nc.status.phase != "Synced":
        why = nc.status.message or f"generation {gen} not applied (agent at {seen})"
        return Hop(node, "synced", config, cause="node not synced", detail=why)
    return Hop(node, "synced", config)


def _route_hop(
    fed: Federation, kernels: KernelPort, node: str, dst: Endpoint, route: tuple[str, str, str]
) -> Hop:
    cidr, gw, dev = route
    config = f"{cidr} via {gw} dev {dev} table {C.ROUTE_TABLE}"
    seen = kernels.route_get(node, dst.ip)
    if seen is None:
        return Hop(node, "route", config)
    if isinstance(seen, str):
        return Hop(node, "route", config, seen, "drift", f"the kernel has no route: {seen}")
    text = f"dev {seen.dev}" + (f" via {seen.via}" if seen.via else "")
    text += f" table {seen.table}" if seen.table else ""
    if seen.dev != dev or seen.via != gw:
        return Hop(node, "route", config, text, "drift", "the kernel routes it elsewhere")
    return Hop(node, "route", config, text)


def _peer_hop(fed: Federation, node: str, gw: str, dev: str) -> Hop:
    """A WireGuard device's next hop: the peer whose allowed IPs hold it (kernel not read)."""
    nc = fed.configs[node]
    addr = ipaddress.ip_address(gw)
    wg = next((w for w in nc.spec.wireguard if w.name == dev), None)
    for peer in wg.peers if wg else ():
        for cidr in peer.allowed_ips:
            net = ipaddress.ip_network(cidr)
            if net.version == addr.version and addr in net:
                return Hop(node, "peer", f"{gw}: peer {peer.public_key} endpoint {peer.endpoint}")
    return Hop(
        node,
        "peer",
        f"no WireGuard peer for {gw} on {dev}",
        cause="no route",
        detail=f"the NodeConfig of {node} has no peer on {dev} allowing {gw}",
    )


def _fdb_hop(fed: Federation, kernels: KernelPort, node: str, gw: str, dev: str) -> Hop:
    nc = fed.configs[node]
    if dev in C.WG_DEVICES:
        return _peer_hop(fed, node, gw, dev)
    arp = next((a for a in nc.spec.arps if a.dev == dev and a.ip == gw), None)
    fdb = arp and next((f for f in nc.spec.fdbs if f.dev == dev and f.mac == arp.mac), None)
    if arp is None or fdb is None:
        return Hop(
            node,
            "fdb",
            f"no neighbour/FDB entry for {gw} on {dev}",
            cause="no route",
            detail=f"the NodeConfig of {node} has no way to {gw}",
        )
    config = f"{gw} lladdr {arp.mac}; FDB {arp.mac} dst {fdb.ip} (underlay)"
    neigh, bridge = (
        kernels.neigh_has(node, dev, gw, arp.mac),
        kernels.fdb_has(node, dev, arp.mac, fdb.ip),
    )
    if neigh is None or bridge is None:
        return Hop(node, "fdb", config)
    kernel = (
        f"neighbour {'present' if neigh else 'missing'}, FDB {'present' if bridge else 'missing'}"
    )
    if not (neigh and bridge):
        return Hop(
            node, "fdb", config, kernel, "drift", "the kernel lacks what the NodeConfig holds"
        )
    return Hop(node, "fdb", config, kernel)


def _deliver(fed: Federation, kernels: KernelPort, node: str, dst: Endpoint) -> Hop:
    config = f"{dst.ip} is in the pod CIDRs of {node}: delivered by the CNI"
    seen = kernels.route_get(node, dst.ip)
    if seen is None:
        return Hop(node, "deliver", config)
    if isinstance(seen, str):
        return Hop(node, "deliver", config, seen, "no route", f"the node has no route: {seen}")
    text = f"dev {seen.dev}"
    if seen.dev in C.OWNED_DEVICES:
        return Hop(node, "deliver", config, text, "drift", "the kernel sends it back to a tunnel")
    return Hop(node, "deliver", config, text)


def _within(kernels: KernelPort, node: str, dst: Endpoint) -> Hop:
    config = f"{dst.ip} is in this cluster: its own network (the CNI) carries it to {dst.node}"
    seen = kernels.route_get(node, dst.ip)
    if seen is None:
        return Hop(node, "cluster", config)
    if isinstance(seen, str):
        return Hop(node, "cluster", config, seen, "no route", f"the node has no route: {seen}")
    text = f"dev {seen.dev}" + (f" via {seen.via}" if seen.via else "")
    if seen.dev in C.OWNED_DEVICES:
        return Hop(node, "cluster", config, text, "drift", "the kernel sends it to a tunnel")
    return Hop(node, "cluster", config, text)


def walk(fed: Federation, kernels: KernelPort, src: Endpoint, dst: Endpoint) -> Trace:
    """Follow dst's route from src's node, hop by hop, to the first bad hop or delivery."""
    if src.node is None:
        raise BadInput(f"{src.text}: no node of the federation holds {src.ip}")
    hops: list[Hop] = []
    node = src.node
    for _ in range(MAX_HOPS):
        hops.append(_synced(fed, node))
        if hops[-1].cause:
            break
        if dst.node == node:
            hops.append(_deliver(fed, kernels, node, dst))
            break
        bad = (
            _family_cause(fed, node, dst)
            or _gateway_cause(fed, node, dst)
            or _encryption_cause(fed, node, dst)
        )
        route = _route_of(fed.configs[node], dst.ip)
        if route is None and dst.node and fed.same_cluster(node, dst.node):
            hops.append(_within(kernels, node, dst))  # e.g. a gateway to one of its nodes
            if hops[-1].cause:
                break
            node = dst.node
            continue
        if route is None:
            hops.append(bad or _no_route(fed, node, dst))
            break
        hops.append(_route_hop(fed, kernels, node, dst, route))
        if hops[-1].cause:
            break
        _, gw, dev = route
        hops.append(_fdb_hop(fed, kernels, node, gw, dev))
        if hops[-1].cause:
            break
        nxt = fed.device_owner(dev, gw)
        if nxt is None:
            hops.append(
                _encryption_cause(fed, node, dst)
                or Hop(
                    node,
                    "next",
                    f"{gw} on {dev}",
                    cause="no route",
                    detail=f"no node's NodeConfig has {dev} address {gw}",
                )
            )
            break
        node = nxt
    else:
        hops.append(Hop(node, "route", "", cause="no route", detail=f"more than {MAX_HOPS} hops"))
    return Trace(src, dst, hops)


@dataclass(frozen=True)
class LabView:
    """The lab behind the store's Clusters: pods by `lab exec` name, namespaces by node."""

    pods: dict[str, tuple[str, str, str | None, str | None]]  # ref -> (node, Cluster, ip, ip6)
    netns: dict[str, str]  # ClusterNode name -> namespace
    nodes: dict[str, str] = field(default_factory=dict)  # LABCLUSTER/NODE -> ClusterNode name

    @classmethod
    def of(cls, clusters: Sequence[Cluster]) -> LabView:
        pods: dict[str, tuple[str, str, str | None, str | None]] = {}
        netns: dict[str, str] = {}
        nodes: dict[str, str] = {}
        for c in clusters:
            if not c.spec.kubeconfig or not is_lab_handle(c.spec.kubeconfig):
                continue
            handle = load_handle(c.spec.kubeconfig)
            try:
                plan_ = load_plan(handle["lab"]).cluster(handle["cluster"])
            except LabError:
                continue
            for n in plan_.nodes:
                netns[cluster_node_name(c.name, n.name)] = n.netns
                nodes[f"{plan_.name}/{n.name}"] = cluster_node_name(c.name, n.name)
            for p in plan_.pods:
                node = cluster_node_name(c.name, p.node)
                for ref in {p.ref(plan_.name), p.ref(c.name)}:
                    pods[ref] = (node, c.name, p.ip, p.ip6)
        return cls(pods, netns, nodes)


@dataclass(frozen=True)
class Pod:
    """A Kubernetes Pod as the trace needs it."""

    cluster: str
    node: str  # spec.nodeName
    ips: tuple[str, ...]  # status.podIPs


class PodPort(Protocol):
    def clusters(self) -> list[str]:
        """The member clusters whose Pods can be read."""
        ...

    def pod(self, cluster: str, namespace: str, name: str) -> Pod | None:
        """The Pod in `cluster`; None: no such Pod. Raises ClusterlinkError when unreadable."""
        ...


class KubePods:
    """Pods read from the member clusters, with the kubeconfig each Cluster's Secret holds on
    the control cluster (`clusterlink-kubeconfig-CLUSTER`)."""

    def __init__(self, store: KubeStore, clusters: Sequence[Cluster]) -> None:
        self.store = store
        self.known = {c.name: c for c in clusters}
        self._apis: dict[str, KubeApi] = {}

    def clusters(self) -> list[str]:
        return sorted(n for n, c in self.known.items() if member_kubeconfig_of(self.store, c))

    def pod(self, cluster: str, namespace: str, name: str) -> Pod | None:
        if cluster not in self._apis:
            text = (
                member_kubeconfig_of(self.store, self.known[cluster])
                if cluster in self.known
                else None
            )
            if text is None:
                raise BadInput(f"Cluster {cluster}: no such joined member cluster")
            self._apis[cluster] = KubeApi(Target(data=text), timeout=5.0, retries=1)
        try:
            obj = self._apis[cluster].request("GET", f"/api/v1/namespaces/{namespace}/pods/{name}")
        except ApiNotFound:
            return None
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        ips = tuple(p["ip"] for p in status.get("podIPs") or [] if p.get("ip"))
        if not ips and status.get("podIP"):
            ips = (status["podIP"],)
        return Pod(cluster, spec.get("nodeName") or "", ips)

    def close(self) -> None:
        for api in self._apis.values():
            api.close()


def _find_pod(pods: PodPort, text: str) -> Pod:
    """`CLUSTER:NS/POD` in that cluster, `NS/POD` in whichever joined member has it."""
    where, _, ref = text.rpartition(":")
    namespace, name = ref.split("/")
    if not (K8S_NAME.fullmatch(namespace) and K8S_NAME.fullmatch(name)):
        raise BadInput(f"{text}: want a Pod NAMESPACE/POD (lower-case DNS names)")
    if where:
        found = pods.pod(where, namespace, name)
        if found is None:
            raise BadInput(f"{text}: no Pod {namespace}/{name} in cluster {where}")
        return found
    hits: list[Pod] = []
    unread: list[str] = []
    members = pods.clusters()
    for cluster in members:
        try:
            hit = pods.pod(cluster, namespace, name)
        except ClusterlinkError as exc:
            unread.append(f"{cluster} ({exc})")
            continue
        hits += [hit] if hit else []
    if len(hits) > 1:
        where_ = ", ".join(h.cluster for h in hits)
        raise BadInput(f"{text}: a Pod in {where_}; name one as CLUSTER:{ref}")
    if not hits:
        tried = ", ".join(members) or "none joined"
        extra = f"; unreadable: {'; '.join(unread)}" if unread else ""
        raise BadInput(f"{text}: no such node, nor Pod in the member clusters ({tried}){extra}")
    return hits[0]


def _pod_endpoint(text: str, fed: Federation, pods: PodPort, family: int) -> Endpoint:
    pod = _find_pod(pods, text)
    ips = [ip for ip in pod.ips if ipaddress.ip_address(ip).version == family]
    if not ips:
        raise BadInput(f"{text}: the Pod has no IPv{family} address (yet)")
    node = cluster_node_name(pod.cluster, pod.node)
    if node not in fed.nodes:
        raise BadInput(f"{text}: runs on {pod.node or 'no node'}, which has no ClusterNode {node}")
    return Endpoint(text, ips[0], node)


def endpoint(
    text: str,
    fed: Federation,
    lab: LabView,
    family: int,
    is_src: bool,
    pods: PodPort | None = None,
) -> Endpoint:
    """SRC or DST as typed: an IP, a lab pod CLUSTER/NODE/POD, a node CLUSTER/NODE (a node
    as DST: the first address of its pod CIDR of the family), or with `pods` (a Kubernetes
    store) a Pod NS/POD or CLUSTER:NS/POD (a node of that name wins over NS/POD)."""
    try:
        ip = str(ipaddress.ip_address(text))
        return Endpoint(text, ip, fed.owner_of(ip))
    except ValueError:
        pass
    parts = text.split("/")
    if pods is not None and len(parts) == 2 and ":" in text:
        return _pod_endpoint(text, fed, pods, family)
    if len(parts) == 3:
        if text not in lab.pods:
            raise BadInput(f"{text}: no such lab pod (CLUSTER/NODE/POD, as `lab exec` names it)")
        node, _, ip4, ip6 = lab.pods[text]
        pod_ip = ip4 if family == 4 else ip6
        if pod_ip is None:
            raise BadInput(f"{text}: the pod has no IPv{family} address")
        return Endpoint(text, pod_ip, node)
    if len(parts) == 2:
        name = lab.nodes.get(text) or cluster_node_name(parts[0], parts[1])
        cn = fed.nodes.get(name)
        if cn is None and pods is not None:
            return _pod_endpoint(text, fed, pods, family)
        if cn is None:
            raise BadInput(f"{text}: no ClusterNode {name}")
        if is_src:
            ip = cn.spec.ip if family == 4 else cn.spec.ip6
        else:
            cidrs = [c for c in cn.spec.pod_cidrs if ipaddress.ip_network(c).version == family]
            ip = str(next(ipaddress.ip_network(cidrs[0]).hosts())) if cidrs else ""
        if not ip:
            raise BadInput(f"{text}: the node has no IPv{family} address")
        return Endpoint(text, ip, name)
    want = "an IP, a lab pod CLUSTER/NODE/POD, a node CLUSTER/NODE"
    raise BadInput(f"{text}: want {want}" + (", a Pod NS/POD or CLUSTER:NS/POD" if pods else ""))


def trace(
    store: Store, src: str, dst: str, family: int | None = None, pods: PodPort | None = None
) -> Trace:
    """Trace SRC -> DST over the federation in `store`; live kernels where the lab has them.
    `family`: which address of a pod or node (default: DST's if an IP, else IPv4). `pods`:
    where NS/POD endpoints are read (default: the member clusters of a Kubernetes store)."""
    fed = Federation.read(store)
    lab = LabView.of(list(fed.clusters.values()))
    if family is None:
        try:
            family = ipaddress.ip_address(dst).version
        except ValueError:
            family = 4
    kube = KubePods(store, list(fed.clusters.values())) if isinstance(store, KubeStore) else None
    try:
        a = endpoint(src, fed, lab, family, True, pods or kube)
        b = endpoint(dst, fed, lab, family, False, pods or kube)
    finally:
        if kube is not None:
            kube.close()
    if ipaddress.ip_address(a.ip).version != ipaddress.ip_address(b.ip).version:
        raise BadInput(f"{src} ({a.ip}) and {dst} ({b.ip}) are of different families")
    kernels: KernelPort = LabKernels(lab.netns) if lab.netns else NoKernels()
    return walk(fed, kernels, a, b)


def command(src: str, dst: str) -> str:
    """The trace command line for a pair (what `dr` suggests for a failed one)."""
    return f"kosmosctl trace {src} {dst}"
