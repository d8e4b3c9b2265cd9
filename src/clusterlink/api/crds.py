"""CustomResourceDefinitions generated from the models, so schema and code cannot drift apart."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from clusterlink import constants as C
from clusterlink.api.cluster import Cluster
from clusterlink.api.clusternode import ClusterNode
from clusterlink.api.linkhealth import LinkHealth
from clusterlink.api.meta import Resource
from clusterlink.api.nodeconfig import NodeConfig

_AGE = {"name": "AGE", "type": "date", "jsonPath": ".metadata.creationTimestamp"}

PRINTER_COLUMNS: dict[str, list[dict[str, str]]] = {
    "Cluster": [
        {
            "name": "NETWORK_TYPE",
            "type": "string",
            "jsonPath": ".spec.clusterLinkOptions.networkType",
        },
        {"name": "IP_FAMILY", "type": "string", "jsonPath": ".spec.clusterLinkOptions.ipFamily"},
        _AGE,
    ],
    "ClusterNode": [
        {"name": "ROLES", "type": "string", "jsonPath": ".spec.roles"},
        {"name": "INTERFACE", "type": "string", "jsonPath": ".spec.interfaceName"},
        {"name": "IP", "type": "string", "jsonPath": ".spec.ip"},
        _AGE,
    ],
    # Kosmos' NodeConfig has no columns: the API server shows NAME AGE. PHASE is ours, after.
    "NodeConfig": [
        _AGE,
        {"name": "PHASE", "type": "string", "jsonPath": ".status.phase"},
    ],
    "LinkHealth": [
        {"name": "PROBED", "type": "string", "jsonPath": ".spec.probedAt"},
        _AGE,
    ],
}

CRD_KINDS: tuple[type[Resource], ...] = (Cluster, ClusterNode, NodeConfig, LinkHealth)

_DROP = {"title", "$defs", "additionalProperties", "discriminator"}


def _openapi(node: Any, defs: dict[str, Any]) -> Any:
    """JSON Schema (pydantic) -> Kubernetes structural OpenAPI v3 schema."""
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        resolved = {**copy.deepcopy(target), **{k: v for k, v in node.items() if k != "$ref"}}
        return _openapi(resolved, defs)
    if "anyOf" in node:
        options = [o for o in node["anyOf"] if o.get("type") != "null"]
        nullable = len(options) != len(node["anyOf"])
        rest = {k: v for k, v in node.items() if k != "anyOf"}
        merged: dict[str, Any] = _openapi({**options[0], **rest}, defs) if len(options) == 1 else {}
        if nullable:
            merged["nullable"] = True
        return merged
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP:
            continue
        if key == "const":
            out["enum"] = [value]
        elif key == "properties":
            out["properties"] = {k: _openapi(v, defs) for k, v in value.items()}
        elif key == "items":
            out["items"] = _openapi(value, defs)
        elif key == "required" or (key == "default" and value is None):
            continue  # the API server must accept partial objects; the models validate
        else:
            out[key] = value
    extra = node.get("additionalProperties")
    if isinstance(extra, dict) and extra:
        out["additionalProperties"] = _openapi(extra, defs)
    elif node.get("type") == "object" and "properties" not in node:
        out["x-kubernetes-preserve-unknown-fields"] = True
    if out.get("type") is None and "enum" in out:
        out["type"] = "string"
    return out


def crd_for(cls: type[Resource]) -> dict[str, Any]:
    schema = cls.model_json_schema(by_alias=True, mode="serialization")
    defs = schema.get("$defs", {})
    props = schema["properties"]
    version_schema: dict[str, Any] = {
        "type": "object",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": _openapi(props["spec"], defs),
        },
    }
    if cls.HAS_STATUS:
        version_schema["properties"]["status"] = _openapi(props["status"], defs)
    for part in ("spec", "status"):
        if part in version_schema["properties"]:
            version_schema["properties"][part].pop("default", None)
    group, version = C.API_VERSION.split("/")
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{cls.PLURAL}.{group}"},
        "spec": {
            "group": group,
            "names": {
                "kind": cls.KIND,
                "listKind": f"{cls.KIND}List",
                "plural": cls.PLURAL,
                "singular": cls.KIND.lower(),
            },
            "scope": "Namespaced" if cls.NAMESPACED else "Cluster",
            "versions": [
                {
                    "name": version,
                    "served": True,
                    "storage": True,
                    "additionalPrinterColumns": PRINTER_COLUMNS[cls.KIND],
                    "schema": {"openAPIV3Schema": version_schema},
                    "subresources": {"status": {}},
                }
            ],
        },
    }


def crd_objects() -> list[dict[str, Any]]:
    """Every CRD as an object, for applying to a cluster."""
    return [crd_for(cls) for cls in CRD_KINDS]


def render_crds() -> dict[str, str]:
    """File name -> YAML text, for every CRD."""
    header = "# Generated from clusterlink.api by `make crds`; do not edit.\n"
    return {
        f"{C.API_GROUP}_{cls.PLURAL}.yaml": header
        + yaml.safe_dump(crd_for(cls), sort_keys=False, default_flow_style=False)
        for cls in CRD_KINDS
    }


def write_crds(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render_crds().items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def stale_crds(directory: Path) -> list[str]:
    """Names of CRD files that are missing or differ from what the models generate."""
    return [
        name
        for name, text in render_crds().items()
        if not (directory / name).exists() or (directory / name).read_text() != text
    ]
