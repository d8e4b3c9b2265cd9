"""Lease semantics on any Store, as client-go's leaderelection has them.

Expiry is never judged by comparing clocks across nodes. Each observer remembers the record it
last saw and when it first saw it, on its *own* monotonic clock (`Observation`); the lease has
expired for that observer once the record has not changed for `leaseDurationSeconds` since.
`renewTime` and `acquireTime` are written (Kubernetes' fields, for people and kubectl) but never
read back for a decision, so a node whose wall clock is off neither steals nor loses a lease.

Every write is a compare-and-swap on resourceVersion, so of two contenders exactly one wins.
The holder's side of the bargain (stop leading before anyone may take over) is in
`controllers/leader.py`. Times are parameters: the functions are deterministic.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, replace

from clusterlink import constants as C
from clusterlink.api.lease import Lease, LeaseSpec
from clusterlink.api.meta import ObjectMeta, now_rfc3339
from clusterlink.store.base import AlreadyExists, Conflict, NotFound, Store


@dataclass(frozen=True)
class Observation:
    """A Lease record as one observer saw it, and since when (its own monotonic seconds)."""

    version: str | None  # resourceVersion: every write of the record changes it
    spec: LeaseSpec
    since: float

    @property
    def holder(self) -> str | None:
        return self.spec.holder_identity or None

    def expired(self, now: float) -> bool:
        """Free for the taking, by this observer's clock: no holder, or the record unchanged
        for a whole lease duration since it was first seen."""
        duration = self.spec.lease_duration_seconds
        return self.holder is None or not duration or now >= self.since + duration

    def restarted(self, now: float) -> Observation:
        """Count the silence from `now`: when the store failed us it may have failed the
        holder too, so an unchanged record is no evidence that the holder is gone."""
        return replace(self, since=max(self.since, now))


def observe(seen: Observation | None, lease: Lease, now: float) -> Observation:
    """`seen` if the record is the one seen before, else the new record seen at `now`."""
    version = lease.metadata.resource_version
    if seen is not None and seen.version == version and seen.spec == lease.spec:
        return seen
    return Observation(version, lease.spec, now)


@dataclass(frozen=True)
class LeaseResult:
    held: bool  # True when `identity` holds the lease after the call
    lease: Lease | None
    acquired: bool = False  # True when this call took it (new holder)
    seen: Observation | None = None  # the record as the caller knows it now


def _renewal(spec: LeaseSpec, duration_seconds: int, now: dt.datetime) -> LeaseSpec:
    """The holder's record, renewed. renewTime must differ from the last one, whatever the
    wall clock says: observers see a renewal only as a changed record."""
    stamp = now_rfc3339(now)
    if stamp == spec.renew_time:
        stamp = now_rfc3339(now + dt.timedelta(microseconds=1))
    return spec.model_copy(update={"renew_time": stamp, "lease_duration_seconds": duration_seconds})


def _takeover(
    spec: LeaseSpec | None, identity: str, duration_seconds: int, stamp: str
) -> LeaseSpec:
    transitions = 0 if spec is None else (spec.lease_transitions or 0) + 1
    return LeaseSpec(
        holder_identity=identity,
        lease_duration_seconds=duration_seconds,
        acquire_time=stamp,
        renew_time=stamp,
        lease_transitions=transitions,
    )


def try_acquire_or_renew(
    store: Store,
    name: str,
    identity: str,
    duration_seconds: int,
    now: dt.datetime,
    namespace: str = C.DEFAULT_NAMESPACE,
    *,
    seen: Observation | None = None,
    monotonic: Callable[[], float] | None = None,
    renew_wait: float | None = None,
    acquire_wait: float | None = None,
    known: Lease | None = None,
) -> LeaseResult:
    """One round of client-go's `tryAcquireOrRenew`: read the Lease, note whether it changed
    since `seen`, renew it if we hold it, take it if it is free or expired by our clock.

    `now` is only stamped into renewTime/acquireTime. `monotonic` is this node's clock (the
    observation time is read *after* the record, so it is never earlier than the write that
    made it); without it every record counts as just seen, so nobody else's lease expires.
    `renew_wait` / `acquire_wait`: how long the write may wait for a busy store (the Store's
    `timeout`). `known`: the record this holder wrote last; a renewal is then a write on it
    without reading first (a compare-and-swap: if anyone changed the record since, the write
    fails and the record is read as usual). StoreError other than a lost race propagates."""
    clock = monotonic or (lambda: 0.0)
    if known is not None and known.spec.holder_identity == identity:
        renewed = known.model_copy(update={"spec": _renewal(known.spec, duration_seconds, now)})
        try:
            updated = store.update(renewed, timeout=renew_wait)
        except (Conflict, NotFound):
            pass  # changed under us: read it, as any round does
        else:
            return LeaseResult(True, updated, seen=observe(None, updated, clock()))
    stamp = now_rfc3339(now)
    try:
        lease = store.get(Lease, name, namespace)
    except NotFound:
        fresh = Lease(
            metadata=ObjectMeta(name=name, namespace=namespace),
            spec=_takeover(None, identity, duration_seconds, stamp),
        )
        try:
            created = store.create(fresh, timeout=acquire_wait)
        except AlreadyExists:
            return LeaseResult(False, None, seen=seen)
        return LeaseResult(True, created, acquired=True, seen=observe(None, created, clock()))
    observation = observe(seen, lease, clock())
    free = observation.expired(clock()) if monotonic else observation.holder is None
    spec = lease.spec
    if spec.holder_identity == identity:
        new_spec, acquired, wait = _renewal(spec, duration_seconds, now), False, renew_wait
    elif not free:
        return LeaseResult(False, lease, seen=observation)
    else:
        new_spec = _takeover(spec, identity, duration_seconds, stamp)
        acquired, wait = True, acquire_wait
    try:
        updated = store.update(lease.model_copy(update={"spec": new_spec}), timeout=wait)
    except (Conflict, NotFound):
        return LeaseResult(False, None, seen=observation)
    return LeaseResult(True, updated, acquired=acquired, seen=observe(None, updated, clock()))


def release(
    store: Store,
    name: str,
    identity: str,
    namespace: str = C.DEFAULT_NAMESPACE,
    timeout: float | None = None,
) -> bool:
    """Give the lease up at once (so a successor need not wait for expiry)."""
    try:
        lease = store.get(Lease, name, namespace)
    except NotFound:
        return False
    if lease.spec.holder_identity != identity:
        return False
    spec = lease.spec.model_copy(update={"holder_identity": None, "renew_time": None})
    try:
        store.update(lease.model_copy(update={"spec": spec}), timeout=timeout)
    except (Conflict, NotFound):
        return False
    return True
