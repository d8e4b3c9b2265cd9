"""The agent's watches start from before its first pass: a ClusterNode created while the
watch threads had not started yet still wakes a pass (NIC detection) at once. It waited for
the 30 s resync in a busy 20-cluster lab, where threads start late."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from clusterlink import constants as C
from clusterlink.agent.fake import FakeFirewall, FakeKernel
from clusterlink.agent.service import Agent
from clusterlink.api import (
    Cluster,
    ClusterLinkOptions,
    ClusterNode,
    ClusterNodeSpec,
    ClusterSpec,
    ObjectMeta,
)
from clusterlink.store.sqlite import SqliteStore


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
    options = ClusterLinkOptions(network_type="p2p")
    store.create(
        Cluster(metadata=ObjectMeta(name="c"), spec=ClusterSpec(cluster_link_options=options))
    )
    kernel = FakeKernel()
    kernel.add_nic("eth0", ("192.168.0.1/24",))
    agent = LateWatches(store, "c-n", kernel, FakeFirewall(), resync=60.0)
    stop = threading.Event()
    thread = threading.Thread(target=agent.run, args=(stop,), daemon=True)
    thread.start()
    try:
        wait_for(lambda: agent.passes == 1, 10, "the first pass")  # no ClusterNode yet
        store.create(
            ClusterNode(
                metadata=ObjectMeta(name="c-n", labels={C.CLUSTER_LABEL: "c"}),
                spec=ClusterNodeSpec(cluster_name="c", node_name="n", ip="192.168.0.1"),
            )
        )
        agent.go.set()  # the watches begin after the creation
        wait_for(lambda: agent.passes >= 2, 5, "the creation woke no pass (resync is 60 s)")
    finally:
        agent.stop(stop)
        thread.join(5)
