"""The agent process: watch the node's NodeConfig, reconcile, resync, report status.

Reconcile, don't react: every pass reads the NodeConfig and the kernel afresh; watch events
and kernel notifications about our state (`agent.events`: a route, neighbour, device, rule
or chain of ours changed by hand) only make the next pass sooner (bursts coalesced within
`coalesce` seconds), and a timer runs one every `resync` seconds as a safety net. Stopping (SIGTERM) leaves the kernel as it is, so a
restart does not disturb traffic; only a deleted NodeConfig tears our state down.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from clusterlink import constants as C
from clusterlink.agent.detect import detect, merged, source_address
from clusterlink.agent.events import KernelEvents
from clusterlink.agent.firewall import Firewall
from clusterlink.agent.kernel import Kernel
from clusterlink.agent.metrics import AgentMetrics
from clusterlink.agent.prefixmaps import PrefixMaps
from clusterlink.agent.reconcile import Reconciler, Report
from clusterlink.agent.wgkeys import KeyFileError
from clusterlink.agent.wireguard import WireGuardNode
from clusterlink.api.cluster import Cluster
from clusterlink.api.clusternode import ClusterNode, ClusterNodeSpec
from clusterlink.api.meta import Resource, now_rfc3339, parse_rfc3339
from clusterlink.api.nodeconfig import NodeConfig, NodeConfigStatus
from clusterlink.store.base import Conflict, Expired, NotFound, Store, StoreError, WatchEvent

log = logging.getLogger("clusterlink.agent")

STATUS_REFRESH = dt.timedelta(minutes=5)  # lastSyncTime is rewritten at least this often
EVENTS_WAIT = 60.0  # seconds the notifications thread sleeps at most (a stop interrupts it)


def spec_hash(nc: NodeConfig) -> str:
    return hashlib.sha256(nc.spec.model_dump_json(by_alias=True).encode()).hexdigest()[:16]


class Agent:
    def __init__(
        self,
        store: Store,
        node: str,
        kernel: Kernel,
        firewall: Firewall,
        *,
        prefix_maps: PrefixMaps | None = None,
        events: KernelEvents | None = None,
        netns_name: str | None = None,
        resync: float = 30.0,
        coalesce: float = 0.1,
        detect_nic: bool = True,
        metrics: AgentMetrics | None = None,
        wireguard: WireGuardNode | None = None,
    ) -> None:
        self.store = store
        self.node = node
        self.kernel = kernel
        self.firewall = firewall
        self.events = events
        self.kernel_wakeups = 0  # passes the kernel's notifications asked for
        self.netns = netns_name
        self.resync = resync
        self.coalesce = coalesce
        self.detect_nic = detect_nic
        self.metrics = metrics
        self.passes = 0
        self.last: Report | None = None
        self.synced_generation: int | None = None
        self.wake = threading.Event()  # set by watch events (and by stop) to run a pass now
        self.wireguard = wireguard
        self.reconciler = Reconciler(kernel, firewall, prefix_maps, wireguard)
        self._cached: NodeConfig | None = None  # reused by timer resyncs while no event came
        self._changed = True  # a watch event (or a start) since we last read the NodeConfig
        self._delivered: NodeConfig | None = None  # the one the watch last brought, decoded
        self._hashed: tuple[NodeConfig, str] | None = None
        # Called after a pass that read a new NodeConfig (the prober: its peers may differ).
        self.on_new_nodeconfig: list[Callable[[], None]] = []

    def nodeconfig(self) -> NodeConfig | None:
        """The NodeConfig the last pass applied (None before one, or when there is none)."""
        return self._cached

    # -- one pass -----------------------------------------------------------------------------

    def sync(self) -> Report:
        if self.detect_nic or self.wireguard is not None:
            self.update_cluster_node()
        previous = self._cached
        nc = self._nodeconfig()
        started = time.monotonic()
        report = self.reconciler(nc.spec if nc else None)
        if nc is not previous:
            for hook in self.on_new_nodeconfig:
                hook()
        if self.metrics is not None:
            self.metrics.passed(nc, report, time.monotonic() - started)
        self.passes += 1
        self.last = report
        if report.changes or report.errors:
            log.info("%s: %s", self.node, report.to_dict())
        self.synced_generation = nc.metadata.generation if nc else None
        if nc is not None:
            self.write_status(nc, report)
        return report

    def _nodeconfig(self) -> NodeConfig | None:
        """The NodeConfig; re-read only when the watch saw a change (or never ran), and
        then taken from the watch when it brought one: decoding a NodeConfig of 250 peers
        costs ~5 ms, and the watch had decoded it already."""
        if self._changed or self._cached is None:
            self._changed = False
            delivered, self._delivered = self._delivered, None
            if delivered is not None:
                self._cached = delivered
                return delivered
            try:
                self._cached = self.store.get(NodeConfig, self.node)
            except NotFound:
                self._cached = None
                self._changed = True  # keep looking until it appears
        return self._cached

    def _spec_hash(self, nc: NodeConfig) -> str:
        """Hashing a large spec costs milliseconds: once per NodeConfig object (timer resyncs
        reuse the same object until the watch reports a change)."""
        if self._hashed is None or self._hashed[0] is not nc:
            self._hashed = (nc, spec_hash(nc))
        return self._hashed[1]

    def write_status(self, nc: NodeConfig, report: Report) -> None:
        now = dt.datetime.now(dt.UTC)
        old = nc.status
        status = NodeConfigStatus(
            phase="Error" if report.errors else "Synced",
            message="; ".join(report.errors)[:2000],
            observed_generation=nc.metadata.generation,
            spec_hash=self._spec_hash(nc),
            last_sync_time=now_rfc3339(now) if not report.errors else old.last_sync_time,
            last_change_time=now_rfc3339(now) if report.changes else old.last_change_time,
            wireguard=self.wireguard.implementation
            if self.wireguard is not None and nc.spec.wireguard
            else "",
        )
        fresh = old.last_sync_time and now - parse_rfc3339(old.last_sync_time) < STATUS_REFRESH
        same = status.model_copy(update={"last_sync_time": old.last_sync_time}) == old
        if same and fresh:
            return
        try:
            self.store.update_status(nc.model_copy(update={"status": status}))
        except (Conflict, NotFound):
            pass  # the NodeConfig moved on; the next pass reports on the new one
        except StoreError as exc:
            log.warning("%s: cannot write status: %s", self.node, exc)

    def update_cluster_node(self) -> None:
        """Detect the NIC and publish the WireGuard key into our ClusterNode. A write that
        conflicts (the elector or the controller wrote it meanwhile: on a gateway candidate,
        at the same moment) is done again on the fresh object now, not at the next pass,
        which may be the resync, 30 s away."""
        for _ in range(5):
            try:
                cn = self.store.get(ClusterNode, self.node)
                cluster = self.store.get(Cluster, cn.spec.cluster_name)
            except NotFound:
                return
            spec = self._cluster_node_spec(cn, cluster)
            if spec == cn.spec:
                return
            try:
                self.store.update(cn.model_copy(update={"spec": spec}))
                return
            except NotFound:
                return
            except Conflict:
                continue
        log.warning("%s: ClusterNode kept conflicting; retried on the next pass", self.node)

    def _cluster_node_spec(self, cn: ClusterNode, cluster: Cluster) -> ClusterNodeSpec:
        spec = cn.spec
        if self.detect_nic:
            found, why = detect(
                cluster,
                cn.spec,
                self.kernel.links(),
                lambda t: source_address(t, self.netns),
                self.kernel.on_link,
            )
            if found is None:
                log.warning(
                    "%s: NIC detection failed: %s (keeping %r)",
                    self.node,
                    why,
                    cn.spec.interface_name,
                )
            else:
                spec = merged(cn.spec, found)
        encrypted = cluster.link is not None and cluster.link.encryption == "wireguard"
        if self.wireguard is not None and (encrypted or spec.wireguard_public_key):
            spec = self._publish_key(cn, spec)
        return spec

    def _rotation_asked(self, cn: ClusterNode) -> bool:
        """A new rotate-keys request on our ClusterNode: act now, not at the next resync."""
        request = cn.metadata.annotations.get(C.ROTATE_KEYS_ANNOTATION, "")
        return self.wireguard is not None and self.wireguard.pending(request)

    def _publish_key(self, cn: ClusterNode, spec: ClusterNodeSpec) -> ClusterNodeSpec:
        """Rotate when the ClusterNode asks (a new value of its rotate-keys annotation), and
        publish the public key; the private key never leaves the node."""
        assert self.wireguard is not None
        request = cn.metadata.annotations.get(C.ROTATE_KEYS_ANNOTATION, "")
        try:
            if self.wireguard.rotate_if_asked(request):
                log.info("%s: WireGuard key rotated (request %s)", self.node, request)
            public = self.wireguard.key_pair().public
        except KeyFileError as exc:
            log.warning("%s: WireGuard key: %s", self.node, exc)
            return spec
        return spec.model_copy(update={"wireguard_public_key": public})

    # -- the loop -----------------------------------------------------------------------------

    def stop(self, stop: threading.Event) -> None:
        """Ask `run` to return (signal-handler safe)."""
        stop.set()
        self.wake.set()

    def run(self, stop: threading.Event) -> None:
        wake = self.wake
        # The watches start from before the first pass: an object created after that pass
        # read the store is an event (read in each thread, a thread that started late began
        # after such a creation and missed it: that node waited for the resync, 30 s).
        since = self.store.revision()
        watchers = [
            threading.Thread(
                target=self._watch,
                args=(kind, stop, wake, since),
                daemon=True,
                name=f"watch-{kind.KIND}",
            )
            # Cluster option changes are picked up by the resync; the ClusterNode's creation
            # starts NIC detection at once.
            for kind in (
                (NodeConfig, ClusterNode)
                if self.detect_nic or self.wireguard is not None
                else (NodeConfig,)
            )
        ]
        if self.events is not None:
            watchers.append(
                threading.Thread(
                    target=self._kernel_events, args=(self.events, stop, wake), daemon=True,
                    name="kernel-events",
                )
            )  # fmt: skip
        for watcher in watchers:
            watcher.start()
        next_resync = 0.0
        while not stop.is_set():
            timeout = max(0.0, next_resync - time.monotonic())
            if wake.wait(timeout):
                stop.wait(self.coalesce)  # let a burst of events land, then act once
                wake.clear()
            if stop.is_set():
                break
            try:
                self.sync()
            except StoreError as exc:
                log.warning("%s: store: %s", self.node, exc)
            except Exception:
                log.exception("%s: reconcile failed", self.node)
            next_resync = time.monotonic() + self.resync
        if self.events is not None:
            self.events.interrupt()  # however we were stopped: done before its sockets close
        # A store watch ends at once under a `Stop` (its doorbell rung), within
        # the store's safety net under a plain Event: a daemon that holds only its own
        # connection, so it is not waited for that long.
        for watcher in watchers:
            watcher.join(timeout=2 if watcher.name == "kernel-events" else 0.2)

    def _kernel_events(
        self, events: KernelEvents, stop: threading.Event, wake: threading.Event
    ) -> None:
        """Wake a pass when the kernel says something of ours changed (drift repaired at
        once, not on the timer). Asleep until a notification, or until `run` ends and
        interrupts the wait."""
        while not stop.is_set():
            try:
                if events.wait(EVENTS_WAIT) and not stop.is_set():
                    self.kernel_wakeups += 1
                    wake.set()
            except OSError as exc:
                log.warning("%s: kernel notifications: %s (the resync timer still runs)",
                            self.node, exc)  # fmt: skip
                return

    def _relevant(self, event: WatchEvent[Any]) -> bool:
        """Events that call for a pass: our NodeConfig's spec (not our own status writes),
        our ClusterNode (NIC detection as soon as it exists), and Cluster options."""
        obj = event.object
        if isinstance(obj, NodeConfig):
            if obj.name != self.node:
                return False
            status_only = (
                event.type == "MODIFIED" and obj.metadata.generation == self.synced_generation
            )
            if not status_only:
                self._delivered = obj if event.type != "DELETED" else None
                self._changed = True
            return not status_only
        if isinstance(obj, ClusterNode):
            if obj.name != self.node:
                return False
            return event.type == "ADDED" or self._rotation_asked(obj)
        return isinstance(obj, Cluster)

    def _watch(
        self, kind: type[Resource], stop: threading.Event, wake: threading.Event, since: int
    ) -> None:
        while not stop.is_set():
            try:
                # Our own NodeConfig and ClusterNode only; every Cluster (options matter).
                name = None if kind is Cluster else self.node
                for event in self.store.watch(kind, since, stop=stop, name=name):
                    since = event.resource_version
                    if self._relevant(event):
                        wake.set()
                return
            except Expired:
                since = self.store.revision()
                self._delivered = None  # what it missed may be newer: read the store
                self._changed = True
                wake.set()
            except StoreError as exc:
                log.warning("%s: watch: %s", self.node, exc)
                stop.wait(1.0)
