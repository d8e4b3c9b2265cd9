"""A member cluster's life in the store, wherever its components run (lab processes or
Kubernetes workloads): when it counts as connected, how it is forgotten, and waiting.
(Was `controllers/membership.py`: it is no controller, but what the federation use cases do.)"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

from clusterlink import constants as C
from clusterlink.api.cluster import Cluster
from clusterlink.api.clusternode import ClusterNode
from clusterlink.api.lease import Lease
from clusterlink.api.nodeconfig import NodeConfig
from clusterlink.controllers.elector import lease_name
from clusterlink.errors import BadInput, Failed
from clusterlink.planner import plan
from clusterlink.store.base import NotFound, Store

CHECK_SHARE = 3.0  # wait_connected sleeps at least this many times as long as a check took


class AlreadyJoined(BadInput):
    """The cluster a join names is a member already, under another name."""


def refuse_duplicate(store: Store, name: str, cluster_id: str, what: str) -> None:
    """Refuse to join `what` (whose intrinsic ID is `cluster_id`) as `name` when a Cluster of
    another name has that ID: two sets of components would fight over its nodes, and
    unjoining one would tear down the other's tunnels. Joining again under the same name
    is an update."""
    for other in store.list(Cluster):
        if other.name != name and other.spec.cluster_id == cluster_id:
            raise AlreadyJoined(
                f"{what} is joined already, as Cluster {other.name} (clusterID {cluster_id}); "
                f"unjoin {other.name} first or join again as {other.name}"
            )


def forget(store: Store, name: str) -> list[ClusterNode]:
    """Delete the Cluster, its ClusterNodes and its gateway Lease (the network-manager then
    deletes the NodeConfigs, and the agents tear down). Returns the ClusterNodes it had."""
    store.delete(Cluster, name)
    nodes = list(store.list(ClusterNode, {C.CLUSTER_LABEL: name}))
    for cn in nodes:
        with contextlib.suppress(NotFound):
            store.delete(ClusterNode, cn.name)
    with contextlib.suppress(NotFound):
        store.delete(Lease, lease_name(name), C.DEFAULT_NAMESPACE)
    return nodes


def nodeconfigs_gone(store: Store, names: set[str]) -> bool:
    return not any(nc.name in names for nc in store.list(NodeConfig))


def wait_until(
    check: Callable[[], bool],
    timeout: float,
    what: str,
    error: type[Exception] = TimeoutError,
    interval: float = 0.1,
) -> float:
    """Poll `check` until true; `error(message)` after `timeout` seconds. Returns seconds."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise error(f"timed out after {timeout:.0f} s waiting for: {what}")
        time.sleep(interval)
    return time.monotonic() - start


def connected(store: Store, names: list[str]) -> tuple[bool, str]:
    """Every node of these clusters is planned, applied and Synced at its current spec.
    The federation is planned (what the network-manager must have written) only once every
    cheaper condition holds: a poll while joins are under way costs no planning."""
    clusters = {c.name: c for c in store.list(Cluster)}
    nodes = store.list(ClusterNode)
    configs = {nc.name: nc for nc in store.list(NodeConfig)}
    for name in names:
        c = clusters.get(name)
        if c is None:
            return False, f"Cluster {name}"
        if not c.status.cluster_link_status.pod_cidrs:
            return False, f"{name}: pod CIDRs from its controller"
        mine = [n for n in nodes if n.spec.cluster_name == name]
        if not mine:
            return False, f"{name}: ClusterNodes from its controller"
        for n in mine:
            if not n.spec.interface_name:
                return False, f"{n.name}: NIC detection by its agent"
        link = c.link
        if link and link.network_type == "gateway" and not any(n.spec.is_gateway for n in mine):
            return False, f"{name}: a gateway elected"
        for n in mine:
            nc = configs.get(n.name)
            if nc is None:
                return False, f"{n.name}: its NodeConfig"
            if (
                nc.status.phase != "Synced"
                or nc.status.observed_generation != nc.metadata.generation
            ):
                return False, f"{n.name}: its agent to apply generation {nc.metadata.generation}"
    expected = plan(list(clusters.values()), nodes)
    mine = [n for n in nodes if n.spec.cluster_name in set(names) and n.name in expected]
    for n in mine:  # each has its NodeConfig (checked above)
        if expected.spec(n.name) != configs[n.name].spec:
            return False, f"{n.name}: the network-manager to plan the latest facts"
    return True, ""


def wait_connected(
    store: Store,
    names: list[str],
    timeout: float,
    interval: float = 0.1,
    progress: Callable[[str], None] | None = None,
    also: Callable[[], str] | None = None,
) -> float:
    """Poll until `connected` (and `also` says "" - what else a federation waits for, e.g.
    the lab's Calico IPPools); seconds it took (Failed after `timeout`). The clusters are
    read and planned again only when the store's revision moved: an idle poll costs one
    request and no planning (on Kubernetes poll once a second: each check lists the Clusters,
    ClusterNodes and NodeConfigs - large objects - from the API server). A check that takes
    long (a large federation on a busy host) spaces the polls: at least CHECK_SHARE-fold its
    own time between two, so the waiter never takes the CPU the components need to get there
    (at 20 x 5 the checks took a sixth of a 2-core host when polled every 0.1 s)."""
    start = time.monotonic()
    seen: int | None = None
    waiting = last = ""
    nodes_ok = False
    pause = interval
    while True:
        revision = store.revision()
        if revision != seen:
            checked = time.monotonic()
            nodes_ok, waiting = connected(store, names)
            pause = max(interval, CHECK_SHARE * (time.monotonic() - checked))
            seen = revision
        if nodes_ok and also is not None:
            waiting = also()  # outside the store's revision: asked on every poll
        if nodes_ok and not waiting:
            return time.monotonic() - start
        if waiting != last and progress is not None:
            progress(f"waiting for {waiting}")
            last = waiting
        if time.monotonic() - start > timeout:
            raise Failed(f"not connected after {timeout:.0f} s: still waiting for {waiting}")
        time.sleep(pause)
