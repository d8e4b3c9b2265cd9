"""`Lease` (coordination.k8s.io/v1 semantics): gateway election and singleton leadership."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from clusterlink import constants as C
from clusterlink.api.meta import Model, Resource


class LeaseSpec(Model):
    holder_identity: str | None = None
    lease_duration_seconds: int | None = Field(default=None, ge=1)
    acquire_time: str | None = None
    renew_time: str | None = None
    lease_transitions: int | None = Field(default=None, ge=0)


class Lease(Resource):
    KIND: ClassVar[str] = "Lease"
    API_VERSION: ClassVar[str] = C.LEASE_API_VERSION
    PLURAL: ClassVar[str] = "leases"
    NAMESPACED: ClassVar[bool] = True
    HAS_STATUS: ClassVar[bool] = False

    spec: LeaseSpec = Field(default_factory=LeaseSpec)
