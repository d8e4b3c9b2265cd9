"""What every federation implementation shares: the link options a join asks for, the
progress callback, the `Federation` interface, and truthful failures."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from clusterlink.api.cluster import IPFamily, NetworkType
from clusterlink.errors import ClusterlinkError, partly_applied
from clusterlink.store.base import Store

Progress = Callable[[str], None]


def quiet(_message: str) -> None:
    """A progress callback that tells nobody."""


@dataclass(frozen=True)
class LinkOptions:
    network_type: NetworkType = "gateway"  # kosmosctl's default (the CRD's is p2p)
    ip_family: IPFamily = "ipv4"
    cni: str = "calico"  # the lab uses its cluster's own CNI whatever this says
    default_nic: str = "*"
    # Any other clusterLinkOptions field, as JSON (globalCIDRsMap, bridgeCIDRs, ...).
    extra: Mapping[str, Any] = field(default_factory=dict)


class Federation(Protocol):
    """A control plane and its members, wherever their components run (lab processes or
    Kubernetes workloads). `member` is the member cluster's kubeconfig or lab handle."""

    store: Store
    poll_interval: float  # how often waiting reads the store

    def install(self, member: str, name: str, options: LinkOptions, progress: Progress) -> None:
        """Start the control plane, then join `member` (the control cluster) as `name`."""
        ...

    def join(self, member: str, name: str, options: LinkOptions, progress: Progress) -> None: ...

    def unjoin(self, name: str, progress: Progress, timeout: float) -> None: ...

    def uninstall(self, progress: Progress, timeout: float) -> None: ...

    def pending(self) -> str:
        """Besides synced nodes, what a join still waits for ("" when nothing)."""
        ...


@contextmanager
def truthful(progress: Progress) -> Iterator[Progress]:
    """Yield a progress callback that remembers the steps done (each message reports a
    change); a failure after one of them is reported as partly applied (exit 1), never as
    "nothing was changed"."""
    done: list[str] = []

    def step(message: str) -> None:
        done.append(message)
        progress(message)

    try:
        yield step
    except ClusterlinkError as exc:
        raise partly_applied(exc, done) from exc
