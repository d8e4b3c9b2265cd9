"""The `Store` port: Kubernetes-like CRUD, optimistic concurrency and watch, over any backend."""

from __future__ import annotations

import builtins
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Generic, Literal, Protocol, TypeVar

from clusterlink.api.meta import Resource
from clusterlink.errors import EXIT_BAD_INPUT, EXIT_FAILURE, ClusterlinkError

R = TypeVar("R", bound=Resource)

EventType = Literal["ADDED", "MODIFIED", "DELETED"]


class StoreError(ClusterlinkError):
    """Any store failure; the message is meant for a user. Raised before a command changed
    anything it means an unusable store (exit 2); use cases that fail half-way say so
    (`errors.partly_applied`)."""

    exit_code = EXIT_BAD_INPUT


class NotFound(StoreError):
    exit_code = EXIT_FAILURE


class AlreadyExists(StoreError):
    pass


class Conflict(StoreError):
    """The caller's resourceVersion is not the current one: re-read and retry. For a user
    the operation ran and was refused (exit 1), as kubectl reports a conflict."""

    exit_code = EXIT_FAILURE


class Expired(StoreError):
    """A watch asked for a revision the change log no longer holds (Kubernetes' 410 Gone)."""


@dataclass(frozen=True)
class WatchEvent(Generic[R]):
    type: EventType
    object: R
    resource_version: int


class ResourceList(list[R]):
    """A list of objects plus the store revision it was read at (watch from there)."""

    resource_version: int = 0


class Store(Protocol):
    """What every component needs from the control plane. Backends: `sqlite`, later `kube`."""

    def create(self, obj: R, *, timeout: float | None = None) -> R:
        """AlreadyExists if it does. `timeout`: see `update`."""
        ...

    def get(self, cls: type[R], name: str, namespace: str | None = None) -> R: ...

    def list(self, cls: type[R], labels: dict[str, str] | None = None) -> ResourceList[R]: ...

    def update(self, obj: R, *, timeout: float | None = None) -> R:
        """Replace metadata (labels, annotations, finalizers) and spec; status is kept.

        Conflict unless obj.metadata.resourceVersion is current (None = unconditional).
        A spec change bumps metadata.generation. `timeout`: wait at most this many seconds for
        a busy backend (0: do not wait), then StoreError with nothing written; None: the
        backend's own limit. Leases use it so a blocked write cannot outlive a deadline.
        """
        ...

    def update_status(self, obj: R) -> R:
        """Replace only the status; same resourceVersion check as `update`."""
        ...

    def delete(self, cls: type[R], name: str, namespace: str | None = None) -> R: ...

    def apply_all(self, objects: Sequence[Resource]) -> builtins.list[Resource]:
        """Create or update every object, all-or-nothing where the backend can."""
        ...

    def patch_all(self, objects: Sequence[Resource]) -> builtins.list[str]:
        """For each object: create it when missing; otherwise set its spec and merge its
        labels into the stored ones, keeping everything else (annotations, finalizers, other
        labels, status). Reading and writing each object is one atomic step, so a write made
        meanwhile by someone else is never lost (sqlite: all of them in one transaction; kube:
        a compare-and-swap per object, done again on a conflict). resourceVersions in
        `objects` are ignored. An object already like that writes nothing. Returns the keys
        written, in order. For a writer that owns specs (the network-manager's NodeConfigs)."""
        ...

    def watch(
        self,
        cls: type[R],
        since: int,
        stop: threading.Event | None = None,
        timeout: float | None = None,
        name: str | None = None,
    ) -> Iterator[WatchEvent[R]]:
        """Every change of kind `cls` after revision `since`, in order; Expired if compacted.
        `name`: only that object's changes (Kubernetes' fieldSelector=metadata.name; a
        namespaced kind's object in kosmos-system)."""
        ...

    def revision(self) -> int: ...

    def kind_revision(self, cls: type[Resource]) -> int | None:
        """The revision of the kind's last change, where the backend keeps it cheaply
        (SQLite: one indexed row); None where it does not (Kubernetes): a caller that skips
        work while a kind is unchanged must then do it."""
        ...

    def close(self) -> None: ...


def selector_matches(labels: dict[str, str], selector: dict[str, str] | None) -> bool:
    return not selector or all(labels.get(k) == v for k, v in selector.items())
