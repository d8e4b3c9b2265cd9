"""`kosmosctl plan`'s use case: the NodeConfigs the network-manager would write for a set of
objects (Clusters and ClusterNodes; other kinds are ignored), as applyable documents, and the
findings. Pure."""

from __future__ import annotations

from typing import Any

from clusterlink.api.cluster import Cluster
from clusterlink.api.clusternode import ClusterNode
from clusterlink.api.meta import ObjectMeta, Resource
from clusterlink.api.nodeconfig import NodeConfig
from clusterlink.errors import Failed
from clusterlink.planner.findings import Finding
from clusterlink.planner.plan import plan


def what_if(
    objects: list[Resource], node: str | None = None, aggregate: bool = True
) -> tuple[list[dict[str, Any]], list[Finding]]:
    """(NodeConfig documents, findings); `node`: only that node's (Failed saying why when it
    gets none); `aggregate` False: internal nodes get one route per remote CIDR, as they
    would without route aggregation."""
    clusters = [o for o in objects if isinstance(o, Cluster)]
    nodes = [o for o in objects if isinstance(o, ClusterNode)]
    result = plan(clusters, nodes)
    result.aggregate = aggregate
    names = result.names
    if node is not None:
        if node not in result:
            why = [f.message for f in result.findings if f.object == f"ClusterNode/{node}"]
            reason = f": {'; '.join(why)}" if why else " (no such ClusterNode)"
            raise Failed(f"node {node} gets no NodeConfig{reason}")
        names = [node]
    configs = [
        NodeConfig(metadata=ObjectMeta(name=n), spec=result.spec(n)).model_dump(
            mode="json", by_alias=True, exclude={"status"}, exclude_none=True
        )
        for n in names
    ]
    for c in configs:
        c["metadata"] = {"name": c["metadata"]["name"]}
    return configs, list(result.findings)
