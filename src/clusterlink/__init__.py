"""clusterlink: multi-cluster container networking over Linux VXLAN (Kosmos ClusterLink style)."""

__version__ = "0.1.0"
