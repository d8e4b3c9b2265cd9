"""The member controller's quiet rounds: nothing is read past the Cluster, and nothing
written, while the facts and the store's Clusters and ClusterNodes are as a sync that wrote
nothing left them; any change there, a store that cannot tell, or the resync period, and it
syncs again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from clusterlink.api import Cluster, ClusterNode
from clusterlink.controllers.member import MemberController, MemberFacts, MemberNode
from clusterlink.store.sqlite import SqliteStore
from tests.unit.planner.federation import cluster


class Facts:
    def __init__(self) -> None:
        self.nodes = [MemberNode("n1", ("10.1.1.0/24",)), MemberNode("n2", ())]
        self.after = 0

    def facts(self, obj: Cluster) -> MemberFacts:
        return MemberFacts(tuple(self.nodes), ("10.1.0.0/16",), ("10.96.0.0/12",))

    def after_sync(self, obj: Cluster) -> int:
        self.after += 1
        return 0


class Blind(SqliteStore):
    """A store that keeps no per-kind revision (as the Kubernetes one)."""

    def kind_revision(self, cls: Any) -> int | None:
        return None


def seeded(path: Path, cls: type[SqliteStore] = SqliteStore) -> SqliteStore:
    store = cls(path)
    store.create(cluster("a", "p2p"))
    return store


def test_quiet_rounds_skip_the_sync_until_something_changes(tmp_path: Path) -> None:
    store, source = seeded(tmp_path / "s.db"), Facts()
    controller = MemberController(store, "a", source)
    assert controller.step() > 0  # two ClusterNodes and the CIDRs
    assert controller.step() == 0 and source.after == 2  # a sync that wrote nothing
    assert controller.step() == 0 and controller.skipped == 1 and source.after == 2
    # Someone deletes a ClusterNode: the next round syncs and puts it back.
    SqliteStore(tmp_path / "s.db").delete(ClusterNode, "a-n2")
    assert controller.step() == 1
    assert store.get(ClusterNode, "a-n2").spec.node_name == "n2"
    controller.step()  # quiet again
    skipped = controller.skipped
    source.nodes.append(MemberNode("n3", ()))  # the member grew
    assert controller.step() == 1 and controller.skipped == skipped
    assert store.get(ClusterNode, "a-n3").spec.node_name == "n3"


def test_no_skipping_past_the_resync_or_on_a_store_that_cannot_tell(tmp_path: Path) -> None:
    store, source = seeded(tmp_path / "s.db"), Facts()
    controller = MemberController(store, "a", source, resync=0.0)
    for _ in range(4):
        controller.step()
    assert controller.skipped == 0 and source.after == 4
    blind, source = seeded(tmp_path / "b.db", Blind), Facts()
    controller = MemberController(blind, "a", source)
    for _ in range(4):
        controller.step()
    assert controller.skipped == 0 and source.after == 4
