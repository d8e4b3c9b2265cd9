"""The network-manager: Clusters + ClusterNodes -> one NodeConfig per node, written only
when its content changed. One active replica (Lease `network-manager`). Each NodeConfig
carries its node's cluster as the `kosmos.io/cluster` label: members may write only the status
of NodeConfigs labelled with their own cluster (the shipped admission policy), and only the
network-manager writes NodeConfigs themselves.

Running, it plans from a watch-fed cache of Clusters and ClusterNodes (`Informer`): it lists
them once, then only when something changed does it plan again - an idle federation costs
the store no LIST but the NodeConfigs of the full comparison every `resync`. Planning again is
incremental (`planner.incremental.Planner`): a change to one ClusterNode patches the last plan
and writes only the NodeConfigs it changed."""

from __future__ import annotations

import logging
import threading
import time

from clusterlink import constants as C
from clusterlink.api.cluster import Cluster
from clusterlink.api.clusternode import ClusterNode
from clusterlink.api.meta import ObjectMeta
from clusterlink.api.nodeconfig import NodeConfig
from clusterlink.controllers.clock import Clock
from clusterlink.controllers.leader import Leadership, LeaseTiming
from clusterlink.controllers.metrics import NetworkManagerMetrics
from clusterlink.controllers.watch import Informer
from clusterlink.planner import Plan
from clusterlink.planner.incremental import Planner
from clusterlink.store.base import NotFound, Store, StoreError

log = logging.getLogger("clusterlink.network-manager")

LEASE = "network-manager"
# NodeConfigs per store write: one sqlite transaction holds the write lock (leases wait
# behind it) for ~1 ms per 50 KB NodeConfig; 50 keeps that far below a lease's retry period.
BATCH = 50


class NetworkManager:
    def __init__(
        self,
        store: Store,
        identity: str,
        *,
        coalesce: float = 0.05,
        settle: float = 1.0,
        settle_per_write: float = 0.02,
        resync: float = 60.0,
        clock: Clock | None = None,
        metrics: NetworkManagerMetrics | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.identity = identity
        self.coalesce = coalesce
        self.settle = settle
        self.settle_per_write = settle_per_write
        self.last_written = 0  # NodeConfigs the last sync wrote
        self.resync = resync
        self.planner = Planner()
        # The planner moves on before the writes: after a failed write, compare with the store.
        self.unsure = False
        self.writes = 0
        self.metrics = metrics
        self.cache: Informer | None = None  # set by `run`; without it `sync` lists the store
        self.cluster_of: dict[str, str] = {}  # ClusterNode (= NodeConfig) name -> its cluster

    def sync(self, full: bool) -> tuple[int, int]:
        """Plan and write. `full`: compare with the stored NodeConfigs (start, resync);
        otherwise write what the planner says changed. Returns (written, deleted)."""
        if self.cache is not None:
            clusters, nodes = self.cache.list(Cluster), self.cache.list(ClusterNode)
        else:
            clusters, nodes = self.store.list(Cluster), self.store.list(ClusterNode)
        started = time.monotonic()
        first = self.planner.plan is None
        diff = self.planner.update(clusters, nodes)
        current = diff.plan
        assert current is not None
        planned = time.monotonic() - started
        if self.planner.last_reason is not None:
            log.debug("planned in full: %s", self.planner.last_reason)
        self.cluster_of = {cn.name: cn.spec.cluster_name for cn in nodes}
        written = deleted = 0
        was_unsure, self.unsure = self.unsure, True
        if full or first or was_unsure:
            stored = {nc.name: nc for nc in self.store.list(NodeConfig)}
            changed = []
            for name in current.names:
                spec = current.spec(name)
                have = stored.get(name)
                labelled = (
                    self._labels(name).items() <= (have.metadata.labels if have else {}).items()
                )
                if have is None or have.spec != spec or not labelled:
                    changed.append(name)
            written += self._write_all(changed, current)
            for name in sorted(set(stored) - set(current.names)):
                deleted += self._delete(name)
        else:
            written += self._write_all(list(diff.changed), current)
            for name in diff.removed:
                deleted += self._delete(name)
        self.unsure = False
        self.last_written = written
        if self.metrics is not None:
            self.metrics.planned(planned, written, deleted, len(current.findings))
        if written or deleted:
            log.info(
                "wrote %d NodeConfigs, deleted %d; %d findings",
                written,
                deleted,
                len(current.findings),
            )
        return written, deleted

    def _labels(self, name: str) -> dict[str, str]:
        cluster = self.cluster_of.get(name)
        return {C.CLUSTER_LABEL: cluster} if cluster else {}

    def _write_all(self, names: list[str], current: Plan) -> int:
        """Write these NodeConfigs `BATCH` at a time, each batch one store call (`patch_all`:
        one transaction on sqlite). Written one by one - a read and a compare-and-swap
        each - a plan of 250 NodeConfigs was 250 turns at the store's write lock behind
        the agents' status writes: on a busy host, minutes per plan."""
        written = 0
        for at in range(0, len(names), BATCH):
            batch = [
                NodeConfig(
                    metadata=ObjectMeta(name=name, labels=self._labels(name)),
                    spec=current.spec(name),
                )
                for name in names[at : at + BATCH]
            ]
            written += len(self.store.patch_all(batch))
        return written

    def _delete(self, name: str) -> int:
        try:
            self.store.delete(NodeConfig, name)
            return 1
        except NotFound:
            return 0

    def wait_quiet(self, waker: Informer, stop: threading.Event) -> float:
        """Wait until no change came for `coalesce` seconds, but no longer than the settle
        time; returns the seconds waited. The settle time is `settle`, or
        `settle_per_write` per NodeConfig the last sync wrote when that is longer: each
        NodeConfig written is one apply by its agent (measured: 33 ms of agent CPU per
        version at 20 x 5, 58 ms at 50 x 5), and while joins kept arriving a plan every
        second rewrote all 100 NodeConfigs of a 20 x 5 lab ten times over (mean 7.1
        versions per node, 30 s to connect); 0.02 s brought that to 2.8-4.7 versions and
        15-17 s (0.05 s connected 50 x 5 in 112 s against 85 s: at that size most waits
        end on a pause anyway). A pause in the changes ends the wait at once."""
        settle = max(self.settle, self.settle_per_write * self.last_written)
        started = time.monotonic()
        while not stop.is_set():
            left = started + settle - time.monotonic()
            if left <= 0 or not waker.wait(min(self.coalesce, left)):
                break
        return time.monotonic() - started

    def run(self, stop: threading.Event, timing: LeaseTiming) -> None:
        leadership = Leadership(self.store, LEASE, self.identity, timing, clock=self.clock)
        waker = self.cache = Informer(self.store, (Cluster, ClusterNode), stop)
        waker.start()
        lease_thread = threading.Thread(target=leadership.run, args=(stop,), daemon=True)
        lease_thread.start()
        led = False
        next_full = 0.0
        try:
            while not stop.is_set():
                woke = waker.wait(min(timing.retry, max(0.0, next_full - time.monotonic())))
                if woke:
                    self.wait_quiet(waker, stop)  # let a burst land, then plan once
                if self.metrics is not None:
                    self.metrics.looped(
                        leadership.is_leader, leadership.reached_store, waker.synced(timeout=0)
                    )
                if not leadership.is_leader:
                    led = False
                    continue
                full = not led or time.monotonic() >= next_full
                if not (woke or full) or not waker.synced(timeout=0):
                    continue  # nothing changed since the last plan (or the cache not filled)
                try:
                    self.sync(full)
                except StoreError as exc:
                    log.warning("sync: %s", exc)
                    waker.poke()
                    stop.wait(1.0)
                    continue
                led = True
                if full:
                    next_full = time.monotonic() + self.resync
        finally:
            stop.set()
            lease_thread.join(timeout=5)
