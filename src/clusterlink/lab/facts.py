"""The member controller's facts port in the lab: a lab cluster's handle file says what a
member's API server would (its nodes, per-node pod CIDRs, pod and service CIDRs)."""

from __future__ import annotations

from pathlib import Path

from clusterlink.api.cluster import Cluster
from clusterlink.controllers.member import FactsError, MemberFacts, MemberNode
from clusterlink.lab.cni import sync_pools
from clusterlink.lab.state import LabError, load_handle
from clusterlink.store.base import Store


def lab_facts(handle: str | Path) -> MemberFacts:
    """A lab cluster's facts, from its handle file (LabError if it is not one)."""
    data = load_handle(handle)
    try:
        return MemberFacts(
            nodes=tuple(
                MemberNode(str(n["name"]), tuple(str(c) for c in n.get("podCIDRs") or ()))
                for n in data["nodes"]
            ),
            pod_cidrs=tuple(str(c) for c in data.get("podCIDRs") or ()),
            service_cidrs=tuple(str(c) for c in data.get("serviceCIDRs") or ()),
        )
    except (KeyError, TypeError, AttributeError):
        raise LabError(f"{handle}: nodes, podCIDRs or serviceCIDRs malformed") from None


class LabFacts:
    """`FactsPort` over one lab handle; after a sync, a Calico cluster's `clusterlink-*`
    IPPools in its lab datastore (as `KubeFacts` writes real ones)."""

    def __init__(self, handle: str | Path, store: Store) -> None:
        self.handle, self.store = handle, store

    def facts(self, cluster: Cluster) -> MemberFacts:
        try:
            return lab_facts(self.handle)
        except LabError as exc:
            raise FactsError(str(exc)) from None

    def after_sync(self, cluster: Cluster) -> int:
        try:
            return sync_pools(self.store, cluster.name, str(self.handle))
        except LabError as exc:
            raise FactsError(str(exc)) from None
