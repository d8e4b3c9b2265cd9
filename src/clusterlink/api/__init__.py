"""Resources (`kosmos.io/v1alpha1`, Kosmos-compatible JSON names) and how to read them."""

from clusterlink.api.cluster import (
    Cluster,
    ClusterLinkOptions,
    ClusterLinkStatus,
    ClusterSpec,
    ClusterStatus,
    VxlanCIDRs,
)
from clusterlink.api.clusternode import ClusterNode, ClusterNodeSpec, cluster_node_name
from clusterlink.api.lease import Lease, LeaseSpec
from clusterlink.api.meta import ObjectMeta, Resource
from clusterlink.api.nodeconfig import (
    Arp,
    Device,
    Fdb,
    Iptables,
    NodeConfig,
    NodeConfigSpec,
    NodeConfigStatus,
    Route,
)

__all__ = [
    "Arp",
    "Cluster",
    "ClusterLinkOptions",
    "ClusterLinkStatus",
    "ClusterNode",
    "ClusterNodeSpec",
    "ClusterSpec",
    "ClusterStatus",
    "Device",
    "Fdb",
    "Iptables",
    "Lease",
    "LeaseSpec",
    "NodeConfig",
    "NodeConfigSpec",
    "NodeConfigStatus",
    "ObjectMeta",
    "Resource",
    "Route",
    "VxlanCIDRs",
    "cluster_node_name",
]
