"""The agent's loop does not leave its node waiting for the 30 s resync: its watches start
from before its first pass (a ClusterNode created while the watch threads had not started
yet still wakes a pass), and a ClusterNode write that conflicts is done again at once. Both
left nodes of a busy 20-cluster lab unsynced for 30 s."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from clusterlink.agent.fake import FakeFirewall
from clusterlink.agent.service import Agent
from clusterlink.api import (
    ClusterNode,
    NodeConfig,
    NodeConfigSpec,
    ObjectMeta,
    Route,
)
from clusterlink.store.base import WatchEvent
from clusterlink.store.counting import CountingStore
from clusterlink.store.sqlite import SqliteStore
from tests.unit.agent import seed


class LateWatches(Agent):
    """An agent whose watch threads begin only when `go` is set."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.go = threading.Event()

    def _watch(self, *args: Any) -> None:
        self.go.wait()
        super()._watch(*args)


def wait_for(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_a_clusternode_created_before_the_watches_began_wakes_a_pass(
    tmp_path: Path,
) -> None:
    store = SqliteStore(tmp_path / "s.db")
    seed.cluster(store)
    kernel = seed.node_kernel()
    agent = LateWatches(store, "c-n", kernel, FakeFirewall(), resync=60.0)
    stop = threading.Event()
    thread = threading.Thread(target=agent.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_for(lambda: agent.passes == 1, 10, "the first pass")  # no ClusterNode yet
        seed.cluster_node(store, interface="")
        agent.go.set()  # the watches begin after the creation
        wait_for(lambda: agent.passes >= 2, 5, "the creation woke no pass (resync is 60 s)")
    finally:
        agent.stop(stop)
        thread.join(5)


class ElectorWritesFirst(SqliteStore):
    """A store where, just before the agent's first ClusterNode write lands, another writer
    updates the same ClusterNode (as the elector does on a gateway candidate)."""

    raced = False

    def update(self, obj: Any, *, timeout: float | None = None) -> Any:
        if isinstance(obj, ClusterNode) and not self.raced:
            self.raced = True
            fresh = self.get(ClusterNode, obj.name)
            labels = {**fresh.metadata.labels, "raced": "yes"}
            super().update(
                fresh.model_copy(
                    update={"metadata": fresh.metadata.model_copy(update={"labels": labels})}
                )
            )
        return super().update(obj, timeout=timeout)


def test_a_clusternode_write_that_conflicts_is_done_again_in_the_same_pass(
    tmp_path: Path,
) -> None:
    from clusterlink.agent.fake import FakeWireGuard
    from clusterlink.agent.wireguard import WireGuardNode

    store = ElectorWritesFirst(tmp_path / "s.db")
    seed.cluster(store, encryption="wireguard")
    seed.cluster_node(store)
    kernel = seed.node_kernel()
    wg = WireGuardNode(FakeWireGuard(kernel), None, tmp_path / "state")
    agent = Agent(store, "c-n", kernel, FakeFirewall(), detect_nic=False, wireguard=wg)
    agent.sync()
    cn = store.get(ClusterNode, "c-n")
    assert cn.metadata.labels.get("raced") == "yes"  # the other write stands
    assert cn.spec.wireguard_public_key == wg.key_pair().public  # and ours, in one pass


def test_a_pass_applies_the_nodeconfig_its_watch_brought_without_reading_it_again(
    tmp_path: Path,
) -> None:
    """The watch decoded the new version already: the pass takes that one (no GET, one
    ~5 ms decode of a large NodeConfig less); a deletion is read from the store."""
    store = SqliteStore(tmp_path / "s.db")
    counted = CountingStore(store, tmp_path / "counts")
    agent = Agent(counted, "c-n", seed.node_kernel(), FakeFirewall(), detect_nic=False)
    route = Route(cidr="10.9.0.0/16", gw="192.168.0.9", dev="eth0")
    created = store.create(
        NodeConfig(metadata=ObjectMeta(name="c-n"), spec=NodeConfigSpec(routes=[route]))
    )
    assert agent._relevant(WatchEvent("ADDED", created, 1))
    assert agent._nodeconfig() is created
    assert counted.counts["get NodeConfig"] == 0
    assert agent._nodeconfig() is created  # nothing new: the same object
    other = NodeConfig(metadata=ObjectMeta(name="c-x"))
    assert not agent._relevant(WatchEvent("ADDED", other, 2))  # another node's
    assert agent._nodeconfig() is created
    store.delete(NodeConfig, "c-n")
    assert agent._relevant(WatchEvent("DELETED", created, 3))
    assert agent._nodeconfig() is None and counted.counts["get NodeConfig"] == 1


def test_a_pass_that_reads_a_new_nodeconfig_calls_the_hooks_and_a_resync_does_not(
    tmp_path: Path,
) -> None:
    """The prober is poked when the peers may have changed: after a pass with a NodeConfig
    it had not seen, not after timer resyncs that reuse the one it has."""
    from clusterlink.agent.events import FakeEvents
    from clusterlink.api import NodeConfig, NodeConfigSpec, ObjectMeta
    from clusterlink.api.nodeconfig import Route
    from clusterlink.store.stop import Stop

    store = SqliteStore(tmp_path / "s.db")
    seed.cluster(store)
    seed.cluster_node(store)
    store.create(NodeConfig(metadata=ObjectMeta(name="c-n"), spec=NodeConfigSpec()))
    events = FakeEvents()
    agent = Agent(store, "c-n", seed.node_kernel(), FakeFirewall(), detect_nic=False,
                  events=events, resync=0.2)  # fmt: skip
    pokes: list[int] = []
    agent.on_new_nodeconfig.append(lambda: pokes.append(agent.passes))
    stop = Stop()
    thread = threading.Thread(target=agent.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_for(lambda: agent.passes >= 4, 5, "a first pass and timer resyncs")
        assert len(pokes) == 1
        nc = store.get(NodeConfig, "c-n")
        route = Route(cidr="10.9.0.0/24", dev="vx-bridge", gw="10.222.0.2")
        store.update(nc.model_copy(update={"spec": NodeConfigSpec(routes=[route])}))
        wait_for(lambda: len(pokes) == 2, 5, "a pass with the new NodeConfig")
    finally:
        agent.stop(stop)
        thread.join(timeout=5)
    assert not thread.is_alive()
