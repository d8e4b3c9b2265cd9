"""Reading resources from multi-document YAML or JSON files, with errors that name the spot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from clusterlink.api.meta import Resource
from clusterlink.api.registry import parse_object
from clusterlink.inputs import InputError, load_yaml_documents, read_text


class ManifestError(ValueError):
    """Bad input in a manifest file; the message names the file, document, object and field."""


def _describe(doc: Any, index: int) -> str:
    if isinstance(doc, dict):
        kind = doc.get("kind") or "?"
        meta = doc.get("metadata")
        name = meta.get("name") if isinstance(meta, dict) else None
        return f"document {index} ({kind}/{name or '?'})"
    return f"document {index}"


def parse_documents(text: str, source: str) -> list[Resource]:
    """Validate every document (and `kind: List` items) first; return them all or raise."""
    try:
        docs = load_yaml_documents(text, source)
    except InputError as exc:
        raise ManifestError(str(exc)) from None
    expanded: list[Any] = []
    for doc in docs:
        if (
            isinstance(doc, dict)
            and doc.get("kind") == "List"
            and isinstance(doc.get("items"), list)
        ):
            expanded.extend(doc["items"])
        else:
            expanded.append(doc)
    objects: list[Resource] = []
    seen: dict[tuple[str, str], int] = {}
    for index, doc in enumerate(expanded, start=1):
        try:
            obj = parse_object(doc)
        except ValueError as exc:
            raise ManifestError(f"{source}: {_describe(doc, index)}: {exc}") from None
        ident = (obj.KIND, obj.key)
        if ident in seen:
            raise ManifestError(
                f"{source}: {_describe(doc, index)}: duplicate of document {seen[ident]}"
            )
        seen[ident] = index
        objects.append(obj)
    return objects


def load_manifest(path: str | Path) -> list[Resource]:
    """Load a file (`-` for stdin is handled by the caller)."""
    try:
        text = read_text(path, "file")
    except InputError as exc:
        raise ManifestError(str(exc)) from None
    return parse_documents(text, str(path))


def dump_yaml(objects: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(objects, sort_keys=False, default_flow_style=False)
