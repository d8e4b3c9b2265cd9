"""The Grafana dashboard in deploy/ asks only for metrics the components export."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import CollectorRegistry

from clusterlink.agent.health import HealthMetrics
from clusterlink.agent.metrics import AgentMetrics
from clusterlink.controllers.metrics import ControllerMetrics, ElectorMetrics, NetworkManagerMetrics

DASHBOARD = Path(__file__).resolve().parents[3] / "deploy" / "grafana-dashboard.json"


def exported() -> set[str]:
    registry = CollectorRegistry()
    AgentMetrics(registry)
    HealthMetrics(registry)
    NetworkManagerMetrics(registry)
    ElectorMetrics(registry)
    ControllerMetrics(registry)
    names = set()
    for family in registry.collect():
        names.add(family.name)
        if family.type == "counter":
            names.add(f"{family.name}_total")
        if family.type == "histogram":
            names |= {f"{family.name}_{s}" for s in ("bucket", "count", "sum")}
    return names


def test_every_dashboard_metric_is_exported() -> None:
    exprs = [t["expr"] for p in json.loads(DASHBOARD.read_text())["panels"] for t in p["targets"]]
    asked = {m for e in exprs for m in re.findall(r"\bclusterlink_[a-z_]+", e)}
    assert len(asked) >= 10
    assert asked - exported() == set()


def test_the_check_catches_a_missing_metric() -> None:
    assert "clusterlink_agent_nonexistent" not in exported()
