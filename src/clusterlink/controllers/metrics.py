"""Metrics and readiness of the control-plane loops: network-manager
(`clusterlink_network_manager_*`), elector (`clusterlink_elector_*`) and member controller
(`clusterlink_controller_*`). Each loop calls its object once per iteration."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from clusterlink.telemetry.server import ComponentMetrics

PLAN_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class NetworkManagerMetrics(ComponentMetrics):
    """Ready while it leads or stands by: its last lease attempt reached the store (and, when
    leading, its cache of Clusters and ClusterNodes is filled)."""

    def __init__(self, registry: CollectorRegistry | None = None, stall: float = 60.0) -> None:
        super().__init__(registry, stall, "no lease attempt yet")
        r = self.registry
        self.plan_seconds = Histogram(
            "clusterlink_network_manager_plan_duration_seconds",
            "Time to plan every NodeConfig from Clusters and ClusterNodes.",
            buckets=PLAN_BUCKETS,
            registry=r,
        )
        self.written = Counter(
            "clusterlink_network_manager_nodeconfigs_written",
            "NodeConfigs created or updated.",
            registry=r,
        )
        self.deleted = Counter(
            "clusterlink_network_manager_nodeconfigs_deleted", "NodeConfigs deleted.", registry=r
        )
        self.findings = Gauge(
            "clusterlink_network_manager_findings",
            "Findings of the last plan (skipped CIDRs, overlaps, nodes without addresses).",
            registry=r,
        )
        self.leader = Gauge(
            "clusterlink_network_manager_leader", "1 while this replica leads.", registry=r
        )

    def planned(self, seconds: float, written: int, deleted: int, findings: int) -> None:
        self.plan_seconds.observe(seconds)
        self.written.inc(written)
        self.deleted.inc(deleted)
        self.findings.set(findings)

    def looped(self, leader: bool, reached_store: bool, cache_synced: bool) -> None:
        self.heartbeat.beat()
        self.leader.set(1 if leader else 0)
        if not reached_store:
            self._ready = (False, "cannot reach the lease in the store")
        elif leader and not cache_synced:
            self._ready = (False, "leading; Clusters and ClusterNodes not listed yet")
        else:
            self._ready = (True, "leading" if leader else "standing by")


class ElectorMetrics(ComponentMetrics):
    """Ready while its last lease attempt reached the store."""

    def __init__(self, registry: CollectorRegistry | None = None, stall: float = 30.0) -> None:
        super().__init__(registry, stall, "no lease attempt yet")
        r = self.registry
        self.is_gateway = Gauge(
            "clusterlink_elector_is_gateway", "1 while this node holds the gateway lease.",
            registry=r,
        )  # fmt: skip
        self.transitions = Counter(
            "clusterlink_elector_lease_transitions",
            "Times this node took or lost its cluster's gateway lease.",
            registry=r,
        )
        self._was = False

    def stepped(self, gateway: bool, reached_store: bool) -> None:
        self.heartbeat.beat()
        if gateway != self._was:
            self.transitions.inc()
        self._was = gateway
        self.is_gateway.set(1 if gateway else 0)
        self._ready = (
            (True, "gateway" if gateway else "candidate")
            if reached_store
            else (False, "cannot reach the lease in the store")
        )


class ControllerMetrics(ComponentMetrics):
    """Ready once a sync of the member's facts succeeded, until one fails."""

    def __init__(self, registry: CollectorRegistry | None = None, stall: float = 60.0) -> None:
        super().__init__(registry, stall, "no sync yet")
        r = self.registry
        self.nodes = Gauge(
            "clusterlink_controller_nodes", "Nodes of the member cluster, last sync.", registry=r
        )
        self.discovery_errors = Counter(
            "clusterlink_controller_discovery_errors",
            "Syncs that failed reading the member's facts or writing them to the store.",
            registry=r,
        )
        self.writes = Counter(
            "clusterlink_controller_writes",
            "Store writes made syncing the member's facts.",
            registry=r,
        )
        self.last_sync = Gauge(
            "clusterlink_controller_last_sync_timestamp_seconds",
            "Unix time of the last successful sync.",
            registry=r,
        )

    def synced(self, nodes: int, writes: int) -> None:
        self.heartbeat.beat()
        self.nodes.set(nodes)
        self.writes.inc(writes)
        self.last_sync.set(time.time())
        self._ready = (True, f"{nodes} nodes synced")

    def failed(self, why: str) -> None:
        self.heartbeat.beat()
        self.discovery_errors.inc()
        self._ready = (False, why)
