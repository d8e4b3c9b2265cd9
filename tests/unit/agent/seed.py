"""One P2P cluster `c` with one node `c-n` (192.168.0.1 on eth0), for agent tests that
need a store and a fake kernel."""

from __future__ import annotations

from clusterlink import constants as C
from clusterlink.agent.fake import FakeKernel
from clusterlink.api import (
    Cluster,
    ClusterLinkOptions,
    ClusterNode,
    ClusterNodeSpec,
    ClusterSpec,
    ObjectMeta,
)
from clusterlink.store.base import Store


def cluster(store: Store, encryption: str = "none") -> None:
    options = ClusterLinkOptions(network_type="p2p", encryption=encryption)
    store.create(
        Cluster(metadata=ObjectMeta(name="c"), spec=ClusterSpec(cluster_link_options=options))
    )


def cluster_node(store: Store, interface: str = "eth0") -> None:
    store.create(
        ClusterNode(
            metadata=ObjectMeta(name="c-n", labels={C.CLUSTER_LABEL: "c"}),
            spec=ClusterNodeSpec(
                cluster_name="c", node_name="n", ip="192.168.0.1", interface_name=interface
            ),
        )
    )


def node_kernel() -> FakeKernel:
    kernel = FakeKernel()
    kernel.add_nic("eth0", ("192.168.0.1/24",))
    return kernel
