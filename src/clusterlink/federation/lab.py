"""The lab's federation: what `kosmosctl install/join/unjoin/uninstall` do when
`--kubeconfig` is a lab handle (`LabFederation`; the module functions are its steps).

Components run as supervised processes inside node namespaces, as host-network pods would on
Kubernetes: the network-manager on the control cluster's first node; per member cluster a
controller (first node), an elector on each gateway candidate, an agent on every node.
Component names: `network-manager`, `<cluster>.controller`, `<cluster>.elector.<node>`,
`<cluster>.agent.<node>`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pydantic import ValidationError

from clusterlink import constants as C
from clusterlink.api.cluster import Cluster, ClusterLinkOptions, ClusterSpec
from clusterlink.api.clusternode import cluster_node_name
from clusterlink.api.lease import Lease
from clusterlink.api.meta import ObjectMeta
from clusterlink.api.registry import format_validation_error
from clusterlink.controllers.clock import ENV_CLOCK_SKEW
from clusterlink.errors import Failed
from clusterlink.federation.base import LinkOptions, Progress
from clusterlink.federation.membership import (
    forget,
    nodeconfigs_gone,
    refuse_duplicate,
    wait_until,
)
from clusterlink.lab import supervisor
from clusterlink.lab.cni import pools_pending, remove_pools
from clusterlink.lab.state import (
    LabError,
    cluster_id,
    lab_uid,
    load_handle,
    load_plan,
    state_dir,
)
from clusterlink.lab.topology import ClusterPlan, NodePlan
from clusterlink.store.base import NotFound, Store

COMPONENT = [sys.executable, "-m", "clusterlink.cli.components"]


def component_env(lab: str) -> dict[str, str]:
    """Watch polling for the lab's components: 5 ms in small labs; with many component
    processes on one host, polling less often keeps the CPU for the datapath."""
    nodes = sum(len(c.nodes) for c in load_plan(lab).clusters)
    return {"CLUSTERLINK_WATCH_POLL": "0.005" if nodes <= 20 else "0.025"}


def topology_options(cluster: ClusterPlan) -> LinkOptions:
    """How the topology's `join:` says to join this lab cluster."""
    return LinkOptions(
        cluster.join.network_type,
        cluster.join.ip_family or cluster.ip_family,
        cluster.cni,
        "*",
        cluster.join.link_fields(),
    )


def lab_cluster(handle: str | Path) -> tuple[str, ClusterPlan]:
    """The lab and the lab cluster a handle names."""
    data = load_handle(handle)
    lab = data.get("lab")
    if not isinstance(lab, str):
        raise LabError(f"{handle}: a lab handle without a lab name")
    try:
        return lab, load_plan(lab).cluster(str(data.get("cluster")))
    except KeyError:
        raise LabError(f"{handle}: lab {lab} has no cluster {data.get('cluster')!r}") from None


class _Components:
    """The components one install or join starts, registered with the lab supervisor at
    once (one write of components.json, one read of the lab plan: a join of 20 clusters ran
    on a host busy with the components of the others, where each write and read is slow)."""

    def __init__(self, lab: str) -> None:
        self.lab = lab
        self.env = component_env(lab)
        self.specs: dict[str, supervisor.Spec] = {}

    def run(self, name: str, node: NodePlan, *args: str) -> None:
        """Keep `clusterlink ARGS` running on `node` (in its namespace, with its clock skew)."""
        env = dict(self.env)
        if node.clock_skew:
            env[ENV_CLOCK_SKEW] = str(node.clock_skew)
        self.specs[name] = supervisor.Spec(node.netns, [*COMPONENT, *args], env)

    def register(self) -> None:
        supervisor.register_all(state_dir(self.lab), self.specs)


def install(
    store: Store, store_url: str, handle: str, name: str, options: LinkOptions, progress: Progress
) -> None:
    lab, cluster = lab_cluster(handle)
    first = cluster.nodes[0]
    lease = ("--lease-duration", "4", "--renew-deadline", "3", "--retry-period", "0.5")
    components = _Components(lab)
    components.run("network-manager", first, "network-manager", "--store", store_url, *lease)
    components.register()
    progress(f"network-manager started on {cluster.name}/{first.name}")
    join(store, store_url, handle, name, options, progress)


def join(
    store: Store, store_url: str, handle: str, name: str, options: LinkOptions, progress: Progress
) -> None:
    lab, cluster = lab_cluster(handle)
    handle = str(Path(handle).resolve())
    # The lab's ID, not the handle's: a copy of a handle, or one edited to say something
    # else, names the same cluster.
    cid = cluster_id(lab_uid(lab), cluster.name)
    refuse_duplicate(store, name, cid, f"{cluster.name} of lab {lab}")
    if options.cni.lower() not in ("calico", cluster.cni):
        progress(
            f"{cluster.name} runs {cluster.cni}: --cni {options.cni} does not apply in the lab"
        )
    try:
        link = ClusterLinkOptions.model_validate(
            {
                **options.extra,
                "networkType": options.network_type,
                "ipFamily": options.ip_family,
                "cni": cluster.cni,
                "defaultNICName": options.default_nic,
            }
        )
    except ValidationError as exc:
        raise LabError(f"clusterLinkOptions of {name}: {format_validation_error(exc)}") from None
    obj = Cluster(
        metadata=ObjectMeta(name=name),
        spec=ClusterSpec(kubeconfig=handle, cluster_id=cid, cluster_link_options=link),
    )
    store.apply_all([obj])
    progress(f"Cluster {name} created ({options.network_type}, {options.ip_family})")
    store_args = ("--store", store_url)
    first = cluster.nodes[0]
    components = _Components(lab)
    components.run(f"{name}.controller", first, "controller", "--cluster", name, "--kubeconfig", handle,
         *store_args, "--period", "5")  # fmt: skip
    for node in cluster.nodes:
        if node.gateway_candidate:
            components.run(f"{name}.elector.{node.name}", node, "elector", "--cluster", name,
                 "--node", node.name, *store_args)  # fmt: skip
        # Each node's own state dir (its WireGuard key) and UAPI socket dir: every node's wg
        # device is named alike, and wireguard-go's socket path is fixed (docs/encryption.md).
        node_dir = state_dir(lab) / "agents" / cluster_node_name(name, node.name)
        components.run(f"{name}.agent.{node.name}", node, "agent",
             "--node", cluster_node_name(name, node.name), *store_args,
             "--state-dir", str(node_dir), "--wireguard-socket-dir", str(node_dir / "run"))  # fmt: skip
    components.register()
    electors = sum(n.gateway_candidate for n in cluster.nodes)
    progress(f"{name}: controller, {electors} electors, {len(cluster.nodes)} agents started")


def _components_of(lab: str, name: str, cluster: ClusterPlan) -> list[str]:
    """The supervised components a join as `name` started on `cluster` - by their exact
    names: a prefix would also take those of a Cluster named `<name>.x`."""
    mine = {f"{name}.controller"}
    for node in cluster.nodes:
        mine |= {f"{name}.elector.{node.name}", f"{name}.agent.{node.name}"}
    return [c for c in supervisor.read_components(state_dir(lab)) if c in mine]


def _out(argv: list[str]) -> str:
    return subprocess.run(argv, capture_output=True, text=True).stdout


def no_state_left(netns_names: list[str]) -> bool:
    """No clusterlink state on these nodes: no vx device, no `lookup 200` policy rule, no
    CLUSTERLINK chain, no clusterlink nft table. Devices go first in an agent's teardown
    pass and the rest after them, so devices alone said "clean" a moment too early: the
    agent was stopped before it removed its rules (seen once in CI)."""
    for ns in netns_names:
        out = _out(["ip", "-n", ns, "-o", "link", "show"])
        if any(
            f": {dev}:" in out or f": {dev}@" in out for dev in (*C.OWNED_DEVICES, *C.WG_DEVICES)
        ):
            return False
    for ns in netns_names:
        rules = _out(["ip", "-n", ns, "rule"]) + _out(["ip", "-n", ns, "-6", "rule"])
        if f"lookup {C.ROUTE_TABLE}" in rules:
            return False
        saved = _out(["ip", "netns", "exec", ns, "iptables-save"])
        saved += _out(["ip", "netns", "exec", ns, "ip6tables-save"])
        if ":CLUSTERLINK-" in saved:
            return False
        if "clusterlink" in _out(["ip", "netns", "exec", ns, "nft", "list", "tables"]):
            return False
    return True


def unjoin(store: Store, name: str, progress: Progress, timeout: float = 60.0) -> None:
    try:
        obj = store.get(Cluster, name)
    except NotFound:
        raise Failed(f"no Cluster {name}") from None
    lab, cluster = lab_cluster(obj.spec.kubeconfig or "")
    d = state_dir(lab)
    keep_agents = [c for c in _components_of(lab, name, cluster) if ".agent." not in c]
    supervisor.unregister(d, keep_agents)  # controller and electors first: they would recreate
    pools = remove_pools(lab, cluster)  # the member's own datastore holds nothing of ours
    with_label = forget(store, name)
    progress(
        f"{name}: Cluster, {len(with_label)} ClusterNodes and {pools} Calico IPPools deleted; "
        "waiting for agents to tear down"
    )
    names = {cluster_node_name(name, n.name) for n in cluster.nodes}
    wait_until(
        lambda: nodeconfigs_gone(store, names) and no_state_left([n.netns for n in cluster.nodes]),
        timeout,
        f"{name}: NodeConfigs removed and no vx device left on its nodes",
        Failed,
    )
    supervisor.unregister(d, _components_of(lab, name, cluster))
    progress(f"{name}: unjoined; its nodes hold no clusterlink state")


def uninstall(store: Store, lab: str, progress: Progress) -> None:
    for cluster in store.list(Cluster):
        unjoin(store, cluster.name, progress)
    supervisor.unregister(state_dir(lab), ["network-manager"])
    for lease in store.list(Lease):
        store.delete(Lease, lease.metadata.name, lease.metadata.namespace)
    progress("control plane removed")


class LabFederation:
    """`Federation` in a lab: components are supervised processes in node namespaces."""

    poll_interval = 0.1

    def __init__(self, store: Store, url: str, lab: str | None) -> None:
        self.store, self.url, self.lab = store, url, lab

    def install(self, member: str, name: str, options: LinkOptions, progress: Progress) -> None:
        install(self.store, self.url, member, name, options, progress)

    def join(self, member: str, name: str, options: LinkOptions, progress: Progress) -> None:
        join(self.store, self.url, member, name, options, progress)

    def unjoin(self, name: str, progress: Progress, timeout: float) -> None:
        unjoin(self.store, name, progress, timeout)

    def pending(self) -> str:
        """The lab's Calico clusters' IPPools for the other clusters (remote pods would see
        node addresses until they are there)."""
        return pools_pending(self.lab, self.store) if self.lab else ""

    def uninstall(self, progress: Progress, timeout: float) -> None:
        if self.lab is None:
            raise LabError("uninstall in a lab: --kubeconfig must be one of its handles")
        uninstall(self.store, self.lab, progress)


__all__ = [
    "LabFederation",
    "LinkOptions",
    "component_env",
    "install",
    "join",
    "lab_cluster",
    "no_state_left",
    "uninstall",
    "unjoin",
]
