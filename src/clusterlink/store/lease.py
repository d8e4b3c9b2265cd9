"""Lease semantics on any Store (client-go's leader election, in a few functions).

A holder keeps a Lease by renewing it before `leaseDurationSeconds` pass; anyone may take
over an expired Lease. Every write is a compare-and-swap on resourceVersion, so of two
contenders exactly one wins. The clock is a parameter: the functions are deterministic.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from clusterlink import constants as C
from clusterlink.api.lease import Lease, LeaseSpec
from clusterlink.api.meta import ObjectMeta, now_rfc3339, parse_rfc3339
from clusterlink.store.base import AlreadyExists, Conflict, NotFound, Store


@dataclass(frozen=True)
class LeaseResult:
    held: bool  # True when `identity` holds the lease after the call
    lease: Lease | None
    acquired: bool = False  # True when this call took it (new holder)


def expired(lease: Lease, now: dt.datetime) -> bool:
    spec = lease.spec
    if not spec.holder_identity or not spec.renew_time or not spec.lease_duration_seconds:
        return True
    renewed = parse_rfc3339(spec.renew_time)
    return now >= renewed + dt.timedelta(seconds=spec.lease_duration_seconds)


def try_acquire_or_renew(
    store: Store,
    name: str,
    identity: str,
    duration_seconds: int,
    now: dt.datetime,
    namespace: str = C.DEFAULT_NAMESPACE,
) -> LeaseResult:
    stamp = now_rfc3339(now)
    try:
        lease = store.get(Lease, name, namespace)
    except NotFound:
        fresh = Lease(
            metadata=ObjectMeta(name=name, namespace=namespace),
            spec=LeaseSpec(
                holder_identity=identity,
                lease_duration_seconds=duration_seconds,
                acquire_time=stamp,
                renew_time=stamp,
                lease_transitions=0,
            ),
        )
        try:
            return LeaseResult(True, store.create(fresh), acquired=True)
        except AlreadyExists:
            return LeaseResult(False, None)
    spec = lease.spec
    if spec.holder_identity == identity:
        new_spec = spec.model_copy(
            update={"renew_time": stamp, "lease_duration_seconds": duration_seconds}
        )
        acquired = False
    elif not expired(lease, now):
        return LeaseResult(False, lease)
    else:
        new_spec = LeaseSpec(
            holder_identity=identity,
            lease_duration_seconds=duration_seconds,
            acquire_time=stamp,
            renew_time=stamp,
            lease_transitions=(spec.lease_transitions or 0) + 1,
        )
        acquired = True
    try:
        updated = store.update(lease.model_copy(update={"spec": new_spec}))
    except (Conflict, NotFound):
        return LeaseResult(False, None)
    return LeaseResult(True, updated, acquired=acquired)


def release(store: Store, name: str, identity: str, namespace: str = C.DEFAULT_NAMESPACE) -> bool:
    """Give the lease up at once (so a successor need not wait for expiry)."""
    try:
        lease = store.get(Lease, name, namespace)
    except NotFound:
        return False
    if lease.spec.holder_identity != identity:
        return False
    spec = lease.spec.model_copy(update={"holder_identity": None, "renew_time": None})
    try:
        store.update(lease.model_copy(update={"spec": spec}))
    except (Conflict, NotFound):
        return False
    return True
