"""The elector: one Lease per cluster among its gateway candidates; the holder marks its own
ClusterNode `gateway` and clears the role everywhere else in the cluster.

A candidate whose underlay link is down gives the lease up at once (and does not try again
until the link is back), so a cut link fails over in about one retry period instead of a
lease duration.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from clusterlink import constants as C
from clusterlink.api.clusternode import ClusterNode, cluster_node_name
from clusterlink.controllers.clock import Clock, SystemClock
from clusterlink.controllers.leader import Leadership, LeaseFollower, LeaseTiming
from clusterlink.controllers.metrics import ElectorMetrics
from clusterlink.store.base import Conflict, NotFound, Store, StoreError
from clusterlink.store.stop import woken_by

log = logging.getLogger("clusterlink.elector")

# Fast by default: failover within ~3 s even when a gateway dies without giving the lease up
# (Kosmos: 15 s / 10 s / 2 s).
DEFAULT_TIMING = LeaseTiming(duration=2.0, renew_deadline=1.5, retry=0.25)
ROLE_RECHECK = 5.0  # seconds between re-asserting the gateway role while leading


def lease_name(cluster: str) -> str:
    """The cluster's gateway Lease: named as the member's control-cluster account, which the
    shipped admission policy compares with the requester (docs/kubernetes.md)."""
    return f"{C.MEMBER_ACCOUNT_PREFIX}{cluster}"


def set_gateway(store: Store, cluster: str, gateway: str, timeout: float | None = None) -> int:
    """Give `gateway` (a ClusterNode name) the role and take it from the cluster's others.
    `timeout`: how long each write may wait for a busy store (a leader passes what is left of
    its lease, so no role write lands after it stopped leading)."""
    changed = 0
    # Take the role from the others first, then give it: in between the cluster has no
    # gateway for a moment (traffic waits) rather than two (a killed elector's node keeps its
    # role until the new leader takes it: in name order, n1 gained it 20 ms before n2 lost it).
    nodes = store.list(ClusterNode, {C.CLUSTER_LABEL: cluster})
    for cn in sorted(nodes, key=lambda n: n.name == gateway):
        if cn.spec.cluster_name != cluster:
            continue
        is_gw = cn.spec.is_gateway
        if (cn.name == gateway) == is_gw:
            continue
        roles = [r for r in cn.spec.roles if r.lower() != C.GATEWAY_ROLE]
        if cn.name == gateway:
            roles.append(C.GATEWAY_ROLE)
        try:
            store.update(
                cn.model_copy(update={"spec": cn.spec.model_copy(update={"roles": roles})}),
                timeout=timeout,
            )
            changed += 1
        except (Conflict, NotFound):
            pass  # the next round fixes it
    return changed


class UnderlayCheck:
    """Is this node's underlay NIC up, with carrier? The NIC is `interface` if given, else the
    ClusterNode's interfaceName (re-read every `refresh` seconds), else eth0."""

    def __init__(
        self,
        store: Store,
        cluster_node: str,
        link_state: Callable[[str], tuple[bool, bool] | None],
        interface: str | None = None,
        refresh: float = 10.0,
    ) -> None:
        self.store, self.cluster_node, self.link_state = store, cluster_node, link_state
        self.interface, self.refresh = interface, refresh
        self._nic = interface or ""
        self._read_at = float("-inf")

    def nic(self) -> str:
        if self.interface:
            return self.interface
        if not self._nic or time.monotonic() - self._read_at > self.refresh:
            try:
                self._nic = (
                    self.store.get(ClusterNode, self.cluster_node).spec.interface_name or "eth0"
                )
            except StoreError:
                self._nic = self._nic or "eth0"
            self._read_at = time.monotonic()
        return self._nic

    def __call__(self) -> bool:
        state = self.link_state(self.nic())
        return state is not None and state[0] and state[1]


class Elector:
    def __init__(
        self,
        store: Store,
        cluster: str,
        node: str,
        *,
        timing: LeaseTiming = DEFAULT_TIMING,
        underlay_up: Callable[[], bool] = lambda: True,
        clock: Clock | None = None,
        metrics: ElectorMetrics | None = None,
        follow: bool = False,
    ) -> None:
        """`follow`: between tries, a candidate that does not lead sleeps on a watch of the
        Lease (`LeaseFollower`) until the lease is free by its observation, instead of reading
        it every retry period (what a deployed elector does; the simulated-time tests poll)."""
        self.store, self.cluster, self.node = store, cluster, node
        self.follow = follow
        self.me = cluster_node_name(cluster, node)
        self.clock: Clock = clock or SystemClock()
        self.leadership = Leadership(store, lease_name(cluster), self.me, timing, clock=self.clock)
        self.underlay_up = underlay_up
        self.timing = timing
        self._roles_checked = float("-inf")
        self._roles_revision: int | None = None  # ClusterNodes' revision at the last check
        self._marked = False
        self.metrics = metrics

    def _recheck_due(self, now: float) -> bool:
        """ROLE_RECHECK passed, and ClusterNodes changed since the last check (or the store
        cannot tell)."""
        if now - self._roles_checked < ROLE_RECHECK:
            return False
        revision = self._roles_revision
        if revision is not None and self.store.kind_revision(ClusterNode) == revision:
            self._roles_checked = now  # unchanged: nobody edited a role
            return False
        return True

    def _has_role(self) -> bool:
        try:
            return self.store.get(ClusterNode, self.me).spec.is_gateway
        except NotFound:
            return False

    def step(self) -> bool:
        """One round: returns whether we are the gateway now."""
        if not self.underlay_up():
            if self.leadership.is_leader:
                log.warning("%s: underlay down; giving up the gateway lease", self.me)
            self.leadership.give_up()
            return False
        was_leader = self.leadership.is_leader
        if self.leadership.attempt():
            # Roles: at once when we take the lease, then now and then (someone may edit them).
            now = self.clock.monotonic()
            if not was_leader or not self._marked or self._recheck_due(now):
                try:
                    left = self.leadership.leading_until - now
                    revision = self.store.kind_revision(ClusterNode)  # before the list
                    if set_gateway(self.store, self.cluster, self.me, max(0.0, left)):
                        log.info("%s: marked gateway of %s", self.me, self.cluster)
                        revision = None  # our own writes: look again at the next recheck
                    self._roles_checked, self._roles_revision = now, revision
                    # Until our ClusterNode exists (the controller may not have made it yet)
                    # and carries the role, try every round, not every ROLE_RECHECK.
                    self._marked = self._has_role()
                except StoreError as exc:
                    log.warning("%s: cannot set roles: %s", self.me, exc)
            # Marking may have taken long (a busy store): lead only while the lease says so.
            return self.leadership.is_leader
        return False

    def run(self, stop: threading.Event) -> None:
        follower = None
        if self.follow:
            follower = LeaseFollower(self.store, self.leadership.name, stop, self.clock)
            follower.start()
        try:
            with woken_by(stop, None if follower is None else follower.interrupt):
                while not stop.is_set():
                    began = self.clock.monotonic()
                    gateway = self.step()
                    if self.metrics is not None:
                        self.metrics.stepped(gateway, self.leadership.reached_store)
                    if follower is not None and gateway:
                        follower.pause()  # our own renewals are no news
                    elif follower is not None:
                        follower.resume()
                        if self._await(follower, began):
                            continue
                    if self.clock.wait(self.leadership.pause(began), stop):
                        break
        finally:
            self.leadership.give_up()

    def _await(self, follower: LeaseFollower, began: float) -> bool:
        """A candidate that does not lead sleeps until the lease is free by its observation
        (expired, released or deleted; a retry period after its last try at the soonest) and
        follows the record's changes meanwhile, instead of reading it every retry period.
        False when it has no observation to go by (it polls)."""
        while not follower.stop.is_set():
            expiry = self.leadership.expiry()
            if expiry is None:
                return False
            left = max(began + self.timing.retry, expiry) - self.clock.monotonic()
            if left <= 0:
                return True
            latest, lost = follower.wait(left)
            if lost:
                return True  # the next try reads the record
            if latest is not None:
                self.leadership.follow(*latest)
        return True
