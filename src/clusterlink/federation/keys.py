"""`kosmosctl rotate-keys`: ask every agent of a cluster for a new WireGuard key pair.

The private keys live on the nodes only, so rotation is a request: a fresh value of the
`clusterlink.io/rotate-keys` annotation on each ClusterNode. Its agent wakes, makes and saves
a new key, writes it to its wg devices and publishes the new public key; the network-manager
replans and the peers' agents re-key. Traffic between the node and a peer is lost from the
node's switch until the peer has the new key (measured in docs/encryption.md).
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from clusterlink import constants as C
from clusterlink.api.cluster import Cluster
from clusterlink.api.clusternode import ClusterNode
from clusterlink.errors import BadInput, Failed
from clusterlink.store.base import Conflict, NotFound, Store

ATTEMPTS = 5  # a ClusterNode written meanwhile (the agent's NIC detection): read it again


@dataclass(frozen=True)
class Rotation:
    cluster: str
    request: str
    nodes: list[str]

    def to_dict(self) -> dict[str, object]:
        return {"cluster": self.cluster, "request": self.request, "nodes": self.nodes}


def new_request(now: dt.datetime | None = None) -> str:
    """A value never used before: the time (for people) and a random suffix (for machines)."""
    moment = (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%SZ")
    return f"{moment}-{uuid.uuid4().hex[:8]}"


def rotate_keys(store: Store, cluster: str, request: str | None = None) -> Rotation:
    """Request a new key pair on every ClusterNode of `cluster`."""
    try:
        obj = store.get(Cluster, cluster)
    except NotFound:
        raise BadInput(f"no Cluster {cluster}") from None
    if obj.link is None or obj.link.encryption != "wireguard":
        raise BadInput(f"Cluster {cluster}: clusterLinkOptions.encryption is not wireguard")
    request = request or new_request()
    done: list[str] = []
    for cn in store.list(ClusterNode, {C.CLUSTER_LABEL: cluster}):
        _annotate(store, cn, request)
        done.append(cn.name)
    if not done:
        raise Failed(f"Cluster {cluster} has no ClusterNodes: nothing to rotate")
    return Rotation(cluster, request, sorted(done))


def _annotate(store: Store, cn: ClusterNode, request: str) -> None:
    for _ in range(ATTEMPTS):
        annotations = {**cn.metadata.annotations, C.ROTATE_KEYS_ANNOTATION: request}
        meta = cn.metadata.model_copy(update={"annotations": annotations})
        try:
            store.update(cn.model_copy(update={"metadata": meta}))
            return
        except Conflict:
            cn = store.get(ClusterNode, cn.name)
    raise Failed(f"ClusterNode/{cn.name}: kept changing; rotation not requested there")
