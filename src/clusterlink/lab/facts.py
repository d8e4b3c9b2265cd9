"""The member controller's facts port in the lab: a lab cluster's handle file says what a
member's API server would (its nodes, per-node pod CIDRs, pod and service CIDRs).

`LabFacts` reads the handle (YAML) and the lab's plan again only when the handle file changed
(every 5 s in each of a lab's controllers, they were most of a large idle lab's controller CPU)."""

from __future__ import annotations

import os
from pathlib import Path

from clusterlink.api.cluster import Cluster
from clusterlink.controllers.member import FactsError, MemberFacts, MemberNode
from clusterlink.lab.cni import write_pools
from clusterlink.lab.state import LabError, load_handle, load_plan
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
        # What the handle said, with the handle file's stamp when it said it.
        self._facts: tuple[tuple[int, int, int], MemberFacts] | None = None
        self._calico: tuple[tuple[int, int, int], tuple[str, str] | None] | None = None

    def _stamp(self) -> tuple[int, int, int]:
        try:
            st = os.stat(self.handle)
        except OSError:
            return (-1, -1, -1)  # read it (and fail as a missing handle does)
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def facts(self, cluster: Cluster) -> MemberFacts:
        stamp = self._stamp()
        if self._facts is not None and self._facts[0] == stamp and stamp[0] >= 0:
            return self._facts[1]
        try:
            facts = lab_facts(self.handle)
        except LabError as exc:
            raise FactsError(str(exc)) from None
        self._facts = (stamp, facts)
        return facts

    def after_sync(self, cluster: Cluster) -> int:
        """Calico clusters' IPPools (the Cluster list is read each time: other clusters'
        CIDRs are what changes)."""
        stamp = self._stamp()
        try:
            if self._calico is None or self._calico[0] != stamp or stamp[0] < 0:
                data = load_handle(self.handle)
                lab, name = str(data["lab"]), str(data["cluster"])
                calico = load_plan(lab).cluster(name).cni == "calico"
                self._calico = (stamp, (lab, name) if calico else None)
            target = self._calico[1]
            return 0 if target is None else write_pools(self.store, cluster.name, *target)
        except LabError as exc:
            raise FactsError(str(exc)) from None
