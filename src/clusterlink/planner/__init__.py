"""The planner: Clusters + ClusterNodes -> one NodeConfig per node, as a pure function."""

from clusterlink.planner.findings import Finding
from clusterlink.planner.plan import Plan, PlanDiff, plan

__all__ = ["Finding", "Plan", "PlanDiff", "plan"]
