"""`LinkHealth` (ours): how one tunnel-owning node (a gateway or a P2P node) sees each remote
peer across its tunnel, written by that node's agent. Named like the node's NodeConfig.

Written on up/down changes and at most every `HEALTH_REFRESH` seconds otherwise, so the store
sees at most 1/30 writes per second per node plus one per transition."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from clusterlink import constants as C
from clusterlink.api.meta import Model, Resource

HEALTH_REFRESH = 30.0  # seconds between writes while no link changed state

LinkState = Literal["up", "down", "unknown"]


class PeerHealth(Model):
    peer: str  # the remote node's tunnel address (its vx-bridge device address)
    device: str  # our tunnel device toward it (vx-bridge, vx-bridge-6)
    status: LinkState = "unknown"
    rtt_seconds: float | None = Field(default=None, ge=0)  # mean of the window's replies
    loss: float = Field(default=0.0, ge=0, le=1)  # over the last probes (the window)
    since: str | None = None  # when `status` last changed (RFC 3339)


class LinkHealthSpec(Model):
    probed_at: str | None = None  # when this was measured (RFC 3339)
    interval_seconds: float = Field(default=1.0, ge=0.01)
    peers: list[PeerHealth] = Field(default_factory=list)


class LinkHealth(Resource):
    KIND: ClassVar[str] = "LinkHealth"
    API_VERSION: ClassVar[str] = C.API_VERSION
    PLURAL: ClassVar[str] = "linkhealths"
    HAS_STATUS: ClassVar[bool] = False

    spec: LinkHealthSpec = Field(default_factory=LinkHealthSpec)
