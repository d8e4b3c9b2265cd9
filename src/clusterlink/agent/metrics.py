"""The agent's metrics (`clusterlink_agent_*`) and its readiness: ready once the kernel holds
the NodeConfig's current generation without errors."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from clusterlink.agent.reconcile import Report
from clusterlink.api.nodeconfig import NodeConfig
from clusterlink.telemetry.server import ComponentMetrics

KINDS = ("devices", "routes", "fdbs", "arps", "iptables", "address_maps")


class AgentMetrics(ComponentMetrics):
    def __init__(self, registry: CollectorRegistry | None = None, stall: float = 120.0) -> None:
        super().__init__(registry, stall, "no reconcile pass yet")
        r = self.registry
        self.reconcile_seconds = Histogram(
            "clusterlink_agent_reconcile_duration_seconds",
            "Time one reconcile pass took (read NodeConfig, observe, diff, apply).",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.kernel_entries = Gauge(
            "clusterlink_agent_kernel_entries",
            "Entries of the applied NodeConfig in the kernel, by kind (after an error-free pass).",
            ["kind"],
            registry=r,
        )
        self.kernel_changes = Counter(
            "clusterlink_agent_kernel_changes",
            "Kernel changes made (devices, entries, rules, sysctls, firewall and map families).",
            registry=r,
        )
        self.drift_repairs = Counter(
            "clusterlink_agent_drift_repairs",
            "Kernel changes made while the NodeConfig had not changed: drift repaired.",
            registry=r,
        )
        self.apply_errors = Counter(
            "clusterlink_agent_apply_errors", "Errors reported by reconcile passes.", registry=r
        )
        self.last_sync = Gauge(
            "clusterlink_agent_last_sync_timestamp_seconds",
            "Unix time of the last pass that ended without errors.",
            registry=r,
        )
        self.generation = Gauge(
            "clusterlink_agent_nodeconfig_generation",
            "metadata.generation of the NodeConfig the last pass applied (0: none).",
            registry=r,
        )
        for kind in KINDS:
            self.kernel_entries.labels(kind)
        self._applied: int | None = None  # generation of the last pass, None before any

    def passed(self, nc: NodeConfig | None, report: Report, seconds: float) -> None:
        """Record one pass over `nc` (None: no NodeConfig) that took `seconds`."""
        self.heartbeat.beat()
        self.reconcile_seconds.observe(seconds)
        generation = nc.metadata.generation if nc is not None else None
        self.kernel_changes.inc(report.changes)
        if self._applied is not None and generation == self._applied:
            self.drift_repairs.inc(report.changes)
        self.apply_errors.inc(len(report.errors))
        self._applied = generation
        self.generation.set(generation or 0)
        if nc is None:
            self._ready = (False, "no NodeConfig for this node yet")
            return
        if report.errors:
            self._ready = (False, f"generation {generation}: {report.errors[0]}")
            return
        self.last_sync.set(time.time())
        for kind in KINDS:
            self.kernel_entries.labels(kind).set(len(getattr(nc.spec, kind)))
        self._ready = (True, f"NodeConfig generation {generation} applied")
