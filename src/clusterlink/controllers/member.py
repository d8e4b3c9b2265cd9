"""The member controller: a member cluster's Nodes -> ClusterNodes, and its pod and service
CIDRs -> Cluster.status.clusterLinkStatus. It reads the member through one port, `FactsPort`;
the adapters live with what they read: `clusterlink.lab.facts.LabFacts` (a lab handle) and
`clusterlink.kube.member.KubeFacts` (a Kubernetes cluster)."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Protocol

from clusterlink import constants as C
from clusterlink.api.cluster import Cluster, ClusterLinkStatus
from clusterlink.api.clusternode import ClusterNode, ClusterNodeSpec, cluster_node_name
from clusterlink.api.meta import ObjectMeta
from clusterlink.controllers.metrics import ControllerMetrics
from clusterlink.store.base import AlreadyExists, Conflict, NotFound, Store, StoreError

log = logging.getLogger("clusterlink.controller")


@dataclass(frozen=True)
class MemberNode:
    name: str
    pod_cidrs: tuple[str, ...]


@dataclass(frozen=True)
class MemberFacts:
    nodes: tuple[MemberNode, ...]
    pod_cidrs: tuple[str, ...]
    service_cidrs: tuple[str, ...]


def sync_member(store: Store, cluster: str, facts: MemberFacts, obj: Cluster | None = None) -> int:
    """Create/update ClusterNodes (keeping what the agent and elector filled in), delete stale
    ones, write the cluster's CIDRs (`obj`: the Cluster, if just read). Returns the writes."""
    writes = 0
    existing = {cn.name: cn for cn in store.list(ClusterNode, {C.CLUSTER_LABEL: cluster})}
    for node in facts.nodes:
        name = cluster_node_name(cluster, node.name)
        cn = existing.pop(name, None)
        if cn is None:
            try:
                store.create(
                    ClusterNode(
                        metadata=ObjectMeta(name=name, labels={C.CLUSTER_LABEL: cluster}),
                        spec=ClusterNodeSpec(
                            cluster_name=cluster,
                            node_name=node.name,
                            pod_cidrs=list(node.pod_cidrs),
                        ),
                    )
                )
                writes += 1
            except AlreadyExists:
                pass
            continue
        want = cn.spec.model_copy(
            update={
                "cluster_name": cluster,
                "node_name": node.name,
                "pod_cidrs": sorted(node.pod_cidrs),
            }
        )
        want = ClusterNodeSpec.model_validate(want.model_dump(by_alias=True))  # normalise CIDRs
        if want != cn.spec:
            try:
                store.update(cn.model_copy(update={"spec": want}))
                writes += 1
            except (Conflict, NotFound):
                pass
    for stale in existing.values():
        try:
            store.delete(ClusterNode, stale.name)
            writes += 1
        except NotFound:
            pass
    obj = obj or store.get(Cluster, cluster)
    status = ClusterLinkStatus(
        pod_cidrs=list(facts.pod_cidrs), service_cidrs=list(facts.service_cidrs)
    )
    if obj.status.cluster_link_status != status:
        new = obj.status.model_copy(update={"cluster_link_status": status})
        store.update_status(obj.model_copy(update={"status": new}))
        writes += 1
    return writes


class FactsError(Exception):
    """The member's facts could not be read (or its extras written); the message says why."""


class FactsPort(Protocol):
    """Where a member's facts come from. Adapters raise only `FactsError`."""

    def facts(self, cluster: Cluster) -> MemberFacts:
        """The member's nodes and CIDRs (`cluster`: its Cluster, just read)."""
        ...

    def after_sync(self, cluster: Cluster) -> int:
        """What the member needs after a sync (Calico IPPools on Kubernetes); writes made."""
        ...


RESYNC = 60.0  # seconds between syncs while nothing seems to have changed


class MemberController:
    """Every `period`: read the member's facts through `source`, sync them into the store,
    then let the source do what its member needs after a sync. A round whose facts equal
    those of the last sync that wrote nothing, while the store's Clusters and ClusterNodes
    are unchanged since (`Store.kind_revision`; a store that cannot tell always syncs), does
    nothing more until `resync` seconds have passed."""

    def __init__(
        self,
        store: Store,
        cluster: str,
        source: FactsPort,
        *,
        period: float = 5.0,
        resync: float = RESYNC,
        metrics: ControllerMetrics | None = None,
    ) -> None:
        self.store, self.cluster, self.source, self.period = store, cluster, source, period
        self.resync = resync
        self.metrics = metrics
        self.skipped = 0  # rounds that found nothing changed
        self._settled: tuple[object, ...] | None = None  # what the last quiet sync saw
        self._synced_at = float("-inf")

    def _unchanged(self, marks: tuple[object, ...]) -> bool:
        return (
            None not in marks
            and marks == self._settled
            and time.monotonic() - self._synced_at < self.resync
        )

    def step(self) -> int:
        try:
            # Read before the sync's own reads: a change after them shows next round.
            revisions = (self.store.kind_revision(Cluster), self.store.kind_revision(ClusterNode))
            obj = self.store.get(Cluster, self.cluster)
            facts = self.source.facts(obj)
            marks = (facts, *revisions)
            if self._unchanged(marks):
                self.skipped += 1
                writes = 0  # in sync: nothing changed since a sync that found it so
            else:
                writes = sync_member(self.store, self.cluster, facts, obj)
                writes += self.source.after_sync(obj)
                # Only a sync that wrote nothing settles: our own writes changed the kinds.
                self._settled = marks if writes == 0 else None
                self._synced_at = time.monotonic()
        except NotFound:
            log.info("cluster %s is not there (yet)", self.cluster)
            self._failed(f"no Cluster {self.cluster} (yet)")
        except (StoreError, FactsError) as exc:
            log.warning("cluster %s: %s", self.cluster, exc)
            self._failed(str(exc))
        else:
            if self.metrics is not None:
                self.metrics.synced(len(facts.nodes), writes)
            return writes
        return 0

    def _failed(self, why: str) -> None:
        self._settled = None
        if self.metrics is not None:
            self.metrics.failed(why)

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            if self.step():
                log.info("cluster %s: member facts synced", self.cluster)
            stop.wait(self.period)
