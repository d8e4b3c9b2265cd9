"""Reading resources from multi-document YAML or JSON files, with errors that name the spot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from clusterlink.api.meta import Resource
from clusterlink.api.registry import parse_object


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
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ManifestError(f"{source}: malformed YAML{where}: {problem}") from None
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
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError(f"{p}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{p}: cannot read: {exc}") from None
    return parse_documents(text, str(p))


def dump_yaml(objects: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(objects, sort_keys=False, default_flow_style=False)
