"""The kinds we know, by name and by the words a user types for them."""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from clusterlink.api.cluster import Cluster
from clusterlink.api.clusternode import ClusterNode
from clusterlink.api.lease import Lease
from clusterlink.api.meta import Resource
from clusterlink.api.nodeconfig import NodeConfig

# etcd's default request limit (--max-request-bytes, 1.5 MiB): the largest object a Kubernetes
# API server can store; ours refuse the same.
MAX_OBJECT_BYTES = 1536 * 1024

KINDS: dict[str, type[Resource]] = {
    cls.KIND: cls for cls in (Cluster, ClusterNode, NodeConfig, Lease)
}

_ALIASES: dict[str, str] = {
    "cluster": "Cluster",
    "clusters": "Cluster",
    "cl": "Cluster",
    "clusternode": "ClusterNode",
    "clusternodes": "ClusterNode",
    "cn": "ClusterNode",
    "nodeconfig": "NodeConfig",
    "nodeconfigs": "NodeConfig",
    "nc": "NodeConfig",
    "lease": "Lease",
    "leases": "Lease",
}


class UnknownKind(ValueError):
    pass


def kind_class(word: str) -> type[Resource]:
    """Resolve `Cluster`, `clusters`, `cn`, ... to the model class."""
    if word in KINDS:
        return KINDS[word]
    kind = _ALIASES.get(word.lower())
    if kind is None:
        known = ", ".join(sorted(KINDS))
        raise UnknownKind(f"unknown kind {word!r} (known: {known})")
    return KINDS[kind]


def format_validation_error(exc: ValidationError) -> str:
    """One line per problem: `field.path: message`."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(object)"
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}")
    return "; ".join(parts)


def parse_object(data: Any) -> Resource:
    """Build the typed resource for a decoded manifest document; ValueError says what is wrong."""
    if not isinstance(data, dict):
        raise ValueError(
            f"expected a mapping with apiVersion/kind/metadata, got {type(data).__name__}"
        )
    kind = data.get("kind")
    if not isinstance(kind, str) or not kind:
        raise ValueError("kind: missing")
    api_version = data.get("apiVersion")
    if not isinstance(api_version, str) or not api_version:
        raise ValueError("apiVersion: missing")
    size = len(json.dumps(data, default=str, separators=(",", ":")).encode())
    if size > MAX_OBJECT_BYTES:
        raise ValueError(f"{size} bytes as JSON, more than the {MAX_OBJECT_BYTES} allowed")
    cls = KINDS.get(kind)
    if cls is None:
        raise UnknownKind(f"kind: unknown kind {kind!r} (known: {', '.join(sorted(KINDS))})")
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise ValueError(format_validation_error(exc)) from None
