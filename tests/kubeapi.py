"""The Kubernetes API server double: kmock's HTTP server plus what a real API server does.

kmock (PyPI; by kopf's author) gives the aiohttp server and request parsing. Its own
`KubernetesEmulator` merges every write into a dict and lacks what our clients rely on
(machine-probe §3: no resourceVersion/uid/generation, 200 on create, PUT -> 404, no 409 on a
stale update, selectors ignored, no status subresource, watches ignore resourceVersion and
timeoutSeconds), and its discovery lists no resources. So this shim keeps kmock's server and
parser and holds the objects itself, following the API server's rules:

- what a real `kubectl` reads (tests/unit/kube/test_kubectl.py runs one): discovery of every
  kind in `KINDS` (`/api`, `/apis` - aggregated `apidiscovery.k8s.io/v2` when asked for, as
  kubectl 1.32 does, else the legacy lists - `/api/v1`, `/apis/G`, `/apis/G/V`), `/version`,
  `/openapi/v3` (the PATCH operations with their `fieldValidation` parameter, which
  `kubectl apply` looks for, and our CRDs' schemas, for `kubectl explain`), and the **Table**
  format (`Accept: ...;as=Table;g=meta.k8s.io;v=v1`) as apiextensions renders a custom
  resource: Name, then the printer columns of the CRD the double holds (our generated CRDs
  before one is applied; Age alone for built-in kinds), JSONPath cells with arrays as JSON and
  dates as ages. Names, short names and columns of kosmos.io come from our CRDs, not copies.
  `/openapi/v2` has no definitions (kubectl before 1.24, e.g. Debian's 1.20, validates
  client-side against it and so skips every kind). Not served: Table watches
  (`kubectl get -w`), protobuf objects;

- one resourceVersion counter for every kind (etcd's revision); uid, creationTimestamp,
  generation 1 on create; **201** on create, 409 AlreadyExists on a duplicate;
- PUT needs the current resourceVersion (422 without one, **409 Conflict** when stale);
  a no-op write makes no revision and no event; generation grows when anything outside
  metadata/status changes;
- kinds with a status subresource: create and PUT ignore `status`, PUT `/status` changes only
  `status`;
- PATCH: JSON merge patch, and server-side apply (`application/apply-patch+yaml`, needs
  `fieldManager`) as "create, or merge the applied fields" - one field manager, no ownership;
- list and watch honour `labelSelector` (=, ==, !=, exists, !exists) and `fieldSelector`
  (metadata.name, metadata.namespace); lists carry kind, apiVersion and the revision;
- watch from a resourceVersion replays the log after it, **410 Gone** (an ERROR event) below
  the compacted point (`log_limit` events are kept), no resourceVersion means synthetic ADDED
  events first; `timeoutSeconds` ends the stream; a client that goes away ends its handler;
- DELETE answers the deleted object (as for custom resources). `faults` injects error answers;
  an unknown path is a 404 Status;
- who may do what, as tests/kubeauth.py checks it: bearer tokens (the test's admin token, and
  tokens minted by TokenRequest `POST .../serviceaccounts/NAME/token` for an account that
  still exists; 401 otherwise), RBAC of the applied (Cluster)Roles and bindings (403
  Forbidden, recorded in `denied`), and the applied ValidatingAdmissionPolicies' CEL (cel-python)
  on every write, with the Status a real API server answers;
- `pods/NAME:PORT/proxy/PATH` forwards to the Unix socket the pod's `PROXY_SOCKET` annotation
  names (the test plays kubelet and pod network: it runs the floaters). No finalizers, no graceful
  deletion, no admission but ValidatingAdmissionPolicies, defaulting or schema validation (manifests are checked against the
  OpenAPI schema by their own tests).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import copy
import datetime as dt
import functools
import hashlib
import itertools
import json
import re
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp.test_utils
import aiohttp.web
import attrs
import kmock
import yaml
from kmock._internal import parsing as kmock_parsing

from clusterlink.agent.netns import entered as netns_entered
from clusterlink.api.crds import crd_objects
from tests import kubeauth as auth
from tests.kubeauth import ADMIN_TOKEN, Admit


def _kmock_parse_path(
    path: str, _parse: Any = kmock_parsing.parse_path
) -> kmock_parsing.ParsedPath:
    """kmock (0.8) labels each request it logs with its own path parser, which raises on
    `/api/v1/namespaces` (a list of namespaces: a 500 before our handler runs). Ours serves the
    requests; kmock's only labels them, so a path it cannot read gets no label."""
    try:
        return _parse(path)  # type: ignore[no-any-return]
    except ValueError:
        return kmock_parsing.ParsedPath()


kmock_parsing.parse_path = _kmock_parse_path


@dataclass(frozen=True)
class Kind:
    kind: str
    namespaced: bool
    status: bool  # has a status subresource


KINDS: dict[tuple[str, str, str], Kind] = {
    ("kosmos.io", "v1alpha1", "clusters"): Kind("Cluster", False, True),
    ("kosmos.io", "v1alpha1", "clusternodes"): Kind("ClusterNode", False, True),
    ("kosmos.io", "v1alpha1", "nodeconfigs"): Kind("NodeConfig", False, True),
    ("coordination.k8s.io", "v1", "leases"): Kind("Lease", True, False),
    ("", "v1", "namespaces"): Kind("Namespace", False, True),
    ("", "v1", "nodes"): Kind("Node", False, True),
    ("", "v1", "pods"): Kind("Pod", True, True),
    ("", "v1", "configmaps"): Kind("ConfigMap", True, False),
    ("", "v1", "secrets"): Kind("Secret", True, False),
    ("", "v1", "serviceaccounts"): Kind("ServiceAccount", True, False),
    ("", "v1", "services"): Kind("Service", True, True),
    ("apps", "v1", "deployments"): Kind("Deployment", True, True),
    ("apps", "v1", "daemonsets"): Kind("DaemonSet", True, True),
    ("rbac.authorization.k8s.io", "v1", "clusterroles"): Kind("ClusterRole", False, False),
    ("rbac.authorization.k8s.io", "v1", "clusterrolebindings"): Kind(
        "ClusterRoleBinding", False, False
    ),
    ("rbac.authorization.k8s.io", "v1", "roles"): Kind("Role", True, False),
    ("rbac.authorization.k8s.io", "v1", "rolebindings"): Kind("RoleBinding", True, False),
    ("apiextensions.k8s.io", "v1", "customresourcedefinitions"): Kind(
        "CustomResourceDefinition", False, True
    ),
    ("crd.projectcalico.org", "v1", "ippools"): Kind("IPPool", False, False),
    ("crd.projectcalico.org", "v1", "blockaffinities"): Kind("BlockAffinity", False, False),
    ("admissionregistration.k8s.io", "v1", "validatingadmissionpolicies"): Kind(
        "ValidatingAdmissionPolicy", False, False
    ),
    ("admissionregistration.k8s.io", "v1", "validatingadmissionpolicybindings"): Kind(
        "ValidatingAdmissionPolicyBinding", False, False
    ),
}

# Discovery: what kubectl reads to map `clusters.kosmos.io` to a URL (legacy per-group lists,
# or the aggregated `apidiscovery.k8s.io/v2` list when the client asks for it, as 1.32 does).
VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]  # no deletecollection
SHORT_NAMES = {
    "namespaces": ["ns"],
    "nodes": ["no"],
    "pods": ["po"],
    "configmaps": ["cm"],
    "serviceaccounts": ["sa"],
    "services": ["svc"],
    "deployments": ["deploy"],
    "daemonsets": ["ds"],
    "customresourcedefinitions": ["crd", "crds"],
}
VERSION = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.0",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2024-12-11T00:00:00Z",
    "goVersion": "go1.23.3",
    "compiler": "gc",
    "platform": "linux/amd64",
}
AGGREGATED = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"


@functools.cache
def our_crds() -> dict[tuple[str, str], dict[str, Any]]:
    """(group, plural) -> our CRD as the models' generator makes it (what deploy/crds holds: a
    test keeps the two equal). Names and printer columns of kosmos.io come from here."""
    return {(c["spec"]["group"], c["spec"]["names"]["plural"]): c for c in crd_objects()}


def _group_versions() -> list[tuple[str, str]]:
    return list(dict.fromkeys((g, v) for g, v, _ in KINDS))


def _names(gvr: tuple[str, str, str], kind: Kind) -> dict[str, Any]:
    crd = our_crds().get((gvr[0], gvr[2]))
    names = crd["spec"]["names"] if crd else {}
    out: dict[str, Any] = {"singular": names.get("singular", kind.kind.lower())}
    short = names.get("shortNames", SHORT_NAMES.get(gvr[2]))
    if short:
        out["shortNames"] = list(short)
    if names.get("categories"):
        out["categories"] = list(names["categories"])
    return out


def _subresources(gvr: tuple[str, str, str], kind: Kind) -> list[tuple[str, str, list[str]]]:
    """(name, kind, verbs) of each subresource the double serves."""
    out = [("status", kind.kind, ["get", "patch", "update"])] if kind.status else []
    if gvr == ("", "v1", "pods"):
        out.append(("proxy", "PodProxyOptions", ["create", "delete", "get", "patch", "update"]))
    if gvr == ("", "v1", "serviceaccounts"):
        out.append(("token", "TokenRequest", ["create"]))
    return out


def _resource_list(group: str, version: str) -> dict[str, Any]:
    """`/api/v1`, `/apis/G/V`: the legacy APIResourceList."""
    resources: list[dict[str, Any]] = []
    for gvr, kind in KINDS.items():
        if gvr[:2] != (group, version):
            continue
        names = _names(gvr, kind)
        entry = {
            "name": gvr[2],
            "singularName": names["singular"],
            "namespaced": kind.namespaced,
            "kind": kind.kind,
            "verbs": VERBS,
        }
        entry.update({k: names[k] for k in ("shortNames", "categories") if k in names})
        resources.append(entry)
        for sub, sub_kind, verbs in _subresources(gvr, kind):
            resources.append(
                {
                    "name": f"{gvr[2]}/{sub}",
                    "singularName": "",
                    "namespaced": kind.namespaced,
                    "kind": sub_kind,
                    "verbs": verbs,
                }
            )
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": _api_version((group, version, "")),
        "resources": resources,
    }


def _group(group: str) -> dict[str, Any]:
    versions = [
        {"groupVersion": f"{group}/{v}", "version": v} for g, v in _group_versions() if g == group
    ]
    return {
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": group,
        "versions": versions,
        "preferredVersion": versions[0],
    }


def _aggregated(core: bool) -> dict[str, Any]:
    """`/api` or `/apis` as an `apidiscovery.k8s.io/v2` APIGroupDiscoveryList."""
    items: list[dict[str, Any]] = []
    for group, version in _group_versions():
        if (group == "") != core:
            continue
        resources = []
        for gvr, kind in KINDS.items():
            if gvr[:2] != (group, version):
                continue
            names = _names(gvr, kind)
            gvk = {"group": group, "version": version, "kind": kind.kind}
            entry: dict[str, Any] = {
                "resource": gvr[2],
                "responseKind": gvk,
                "scope": "Namespaced" if kind.namespaced else "Cluster",
                "singularResource": names["singular"],
                "verbs": VERBS,
            }
            entry.update({k: names[k] for k in ("shortNames", "categories") if k in names})
            subs = _subresources(gvr, kind)
            if subs:
                entry["subresources"] = [
                    {"subresource": s, "responseKind": {**gvk, "kind": k}, "verbs": verbs}
                    for s, k, verbs in subs
                ]
            resources.append(entry)
        item = next((i for i in items if i["metadata"].get("name", "") == group), None)
        if item is None:
            item = {"metadata": {"name": group} if group else {}, "versions": []}
            items.append(item)
        item["versions"].append(
            {"version": version, "resources": resources, "freshness": "Current"}
        )
    return {
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {},
        "items": items,
    }


def _wants(accept: str, **params: str) -> bool:
    """Whether one media type of an Accept header carries all these parameters."""
    for media in accept.split(","):
        got = dict(p.strip().partition("=")[::2] for p in media.split(";")[1:] if "=" in p)
        if all(got.get(k) == v for k, v in params.items()):
            return True
    return False


def discovery(path: str, accept: str) -> aiohttp.web.Response | None:
    """/version, /api, /apis, /api/v1, /apis/G, /apis/G/V; None for any other path."""
    parts = path.strip("/").split("/")
    versions = _group_versions()
    if parts in (["api"], ["apis"]):
        core = parts == ["api"]
        if _wants(accept, g="apidiscovery.k8s.io", v="v2", **{"as": "APIGroupDiscoveryList"}):
            body = json.dumps(_aggregated(core)).encode()
            return aiohttp.web.Response(body=body, headers={"Content-Type": AGGREGATED})
        if core:
            return _json({"kind": "APIVersions", "versions": ["v1"]})
        groups = [_group(g) for g in dict.fromkeys(g for g, _ in versions if g)]
        return _json({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
    if parts == ["version"]:
        return _json(VERSION)
    if len(parts) == 2 and parts[0] == "api" and ("", parts[1]) in versions:
        return _json(_resource_list("", parts[1]))
    if len(parts) == 2 and parts[0] == "apis" and any(g == parts[1] for g, _ in versions):
        return _json(_group(parts[1]))
    if len(parts) == 3 and parts[0] == "apis" and (parts[1], parts[2]) in versions:
        return _json(_resource_list(parts[1], parts[2]))
    return None


# OpenAPI v3, as much as `kubectl apply` reads: it looks for the PATCH operation of each kind
# and whether it takes `fieldValidation`, to leave validation to the server (which the double
# accepts and does not do: see the module's docstring). Our CRDs' schemas are included.
PATCH_PARAMETERS = ["dryRun", "fieldManager", "fieldValidation", "force"]


def _openapi_path(group: str, version: str) -> str:
    return f"api/{version}" if not group else f"apis/{group}/{version}"


def _openapi_document(group: str, version: str) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for gvr, kind in KINDS.items():
        if gvr[:2] != (group, version):
            continue
        gvk = {"group": group, "version": version, "kind": kind.kind}
        scope = "/namespaces/{namespace}" if kind.namespaced else ""
        operation = {
            "operationId": f"patch{kind.kind}",
            "x-kubernetes-action": "patch",
            "x-kubernetes-group-version-kind": gvk,
            "parameters": [
                {"name": p, "in": "query", "schema": {"type": "string"}} for p in PATCH_PARAMETERS
            ],
            "responses": {"200": {"description": "OK"}},
        }
        paths[f"/{_openapi_path(group, version)}{scope}/{gvr[2]}/{{name}}"] = {"patch": operation}
        crd = our_crds().get((group, gvr[2]))
        if crd is not None:
            served = next(v for v in crd["spec"]["versions"] if v["name"] == version)
            schema = copy.deepcopy(served["schema"]["openAPIV3Schema"])
            schema["x-kubernetes-group-version-kind"] = [gvk]
            schemas[f"{'.'.join(reversed(group.split('.')))}.{version}.{kind.kind}"] = schema
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": VERSION["gitVersion"]},
        "paths": paths,
        "components": {"schemas": schemas},
    }


@functools.cache
def _openapi_documents() -> dict[str, bytes]:
    return {
        _openapi_path(g, v): json.dumps(_openapi_document(g, v)).encode()
        for g, v in _group_versions()
    }


def _protobuf(field: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field."""

    def varint(n: int) -> bytes:
        out = bytearray()
        while True:
            out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
            n >>= 7
            if not n:
                return bytes(out)

    return varint(field << 3 | 2) + varint(len(payload)) + payload


def openapi_v2(path: str, accept: str) -> aiohttp.web.Response | None:
    """`/openapi/v2` without definitions, for kubectl before 1.24 (Debian's is 1.20): it
    validates client-side against this and skips kinds the document does not define. It asks
    for gnostic's protobuf `Document`: swagger (1), info (2: title 1, version 2), paths (8)."""
    if path.rstrip("/") != "/openapi/v2":
        return None
    title, version = "Kubernetes", VERSION["gitVersion"]
    if "protobuf" in accept:
        info = _protobuf(1, title.encode()) + _protobuf(2, version.encode())
        body = _protobuf(1, b"2.0") + _protobuf(2, info) + _protobuf(8, b"")
        return aiohttp.web.Response(body=body, content_type="application/octet-stream")
    document = {"swagger": "2.0", "info": {"title": title, "version": version}, "paths": {}}
    return _json(document)


def openapi_v3(path: str) -> aiohttp.web.Response | None:
    """`/openapi/v3` (the index of group-versions) and `/openapi/v3/<group-version>`."""
    documents = _openapi_documents()
    rest = path.strip("/").removeprefix("openapi/v3").strip("/")
    if not path.strip("/").startswith("openapi/v3"):
        return None
    if not rest:
        index = {
            gv: {
                "serverRelativeURL": f"/openapi/v3/{gv}?hash="
                + hashlib.sha512(doc).hexdigest().upper()
            }
            for gv, doc in documents.items()
        }
        return _json({"paths": index})
    if rest in documents:
        return aiohttp.web.Response(body=documents[rest], content_type="application/json")
    return None


# The Table format (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`), as the API server
# renders a custom resource (apiextensions' tableconvertor): a Name column, then the CRD
# version's additionalPrinterColumns (or Age when it has none), each a simple JSONPath.
CRD_GVR = ("apiextensions.k8s.io", "v1", "customresourcedefinitions")
NAME_COLUMN = {
    "name": "Name",
    "type": "string",
    "format": "name",
    "description": "Name must be unique within a namespace.",
    "priority": 0,
}
AGE_COLUMN = {
    "name": "Age",
    "type": "date",
    "jsonPath": ".metadata.creationTimestamp",
    "description": "CreationTimestamp is a timestamp representing the server time when this "
    "object was created.",
}


def _wants_table(accept: str) -> bool:
    return any(_wants(accept, g="meta.k8s.io", v=v, **{"as": "Table"}) for v in ("v1", "v1beta1"))


def printer_columns(state: State, gvr: tuple[str, str, str]) -> list[dict[str, Any]]:
    """The columns of the CRD the double holds for this resource (what install applied), else
    of our generated CRD (kosmos.io before an install); Age alone for every other kind."""
    group, version, plural = gvr
    crd = state.objects.get((CRD_GVR, None, f"{plural}.{group}")) or our_crds().get((group, plural))
    for served in (crd or {}).get("spec", {}).get("versions") or []:
        if served.get("name") == version:
            return list(served.get("additionalPrinterColumns") or [AGE_COLUMN])
    return [AGE_COLUMN]


_PATH_TOKEN = re.compile(r"\.([^.\[\]]+)|\[(\d+|\*)\]|\['([^']*)'\]")


def jsonpath(obj: Any, path: str) -> list[Any]:
    """The values a simple JSONPath (`.a.b`, `.a[0]`, `.a[*].b`, `['a.b']`) finds; [] for none."""
    values, pos = [obj], 0
    path = path.strip().removeprefix("{").removesuffix("}")
    while pos < len(path):
        token = _PATH_TOKEN.match(path, pos)
        if token is None:
            raise ValueError(f"unsupported JSONPath {path!r}")
        pos = token.end()
        field, index, quoted = token.groups()
        found: list[Any] = []
        for value in values:
            if index is None:
                key = field if field is not None else quoted
                if isinstance(value, dict) and key in value:
                    found.append(value[key])
            elif isinstance(value, list):
                found.extend(value if index == "*" else value[int(index) : int(index) + 1])
        values = found
    return values


def go_json(value: Any) -> str:
    """Go's json.Marshal: compact, sorted keys, <>& escaped."""
    text = json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def human_duration(seconds: float) -> str:
    """k8s.io/apimachinery's duration.HumanDuration (what an AGE column shows)."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes, hours = s // 60, s // 3600
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d{hours % 24}h" if hours % 24 else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y{days}d" if days else f"{hours // 24 // 365}y"
    return f"{hours // 24 // 365}y"


def cell(column: dict[str, Any], obj: dict[str, Any]) -> Any:
    """One cell as the tableconvertor renders it: None where the path finds nothing; a string
    column prints the value as JSONPath does (objects and arrays as JSON, `["gateway"]`)."""
    found = jsonpath(obj, column["jsonPath"])
    if not found or found[0] is None:
        return None
    value, kind = found[0], column.get("type")
    if kind == "string":
        if isinstance(value, dict | list):
            return go_json(value)
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)
    if kind == "integer" and isinstance(value, int | float) and not isinstance(value, bool):
        return int(value)
    if kind == "number" and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if kind == "boolean" and isinstance(value, bool):
        return value
    if kind == "date" and isinstance(value, str):
        try:
            created = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return "<invalid>"
        return human_duration((dt.datetime.now(dt.UTC) - created).total_seconds())
    return None


def table(
    objects: list[dict[str, Any]],
    columns: list[dict[str, Any]],
    include: str | None,
    revision: str,
) -> dict[str, Any]:
    """A meta.k8s.io/v1 Table; `include` is the includeObject parameter (None, Object, or
    Metadata, the default: a PartialObjectMetadata per row)."""
    definitions = [NAME_COLUMN] + [
        {
            "name": c["name"],
            "type": c["type"],
            "format": c.get("format", ""),
            "description": c.get("description", ""),
            "priority": c.get("priority", 0),
        }
        for c in columns
    ]
    rows = []
    for obj in objects:
        row: dict[str, Any] = {"cells": [obj["metadata"]["name"], *(cell(c, obj) for c in columns)]}
        if include == "Object":
            row["object"] = obj
        elif include != "None":
            row["object"] = {
                "kind": "PartialObjectMetadata",
                "apiVersion": "meta.k8s.io/v1",
                "metadata": obj["metadata"],
            }
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": revision},
        "columnDefinitions": definitions,
        "rows": rows,
    }


Key = tuple[tuple[str, str, str], str | None, str]
PROXY_SOCKET = "kubeapi.test/proxy-unix-socket"  # pod annotation: where its proxy goes  # (group, version, plural), namespace, name


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message

    def status(self) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Status",
            "metadata": {},
            "status": "Failure",
            "code": self.code,
            "reason": self.reason,
            "message": self.message,
        }


@dataclass(frozen=True)
class Event:
    rv: int
    gvr: tuple[str, str, str]
    type: str
    object: dict[str, Any]


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _api_version(gvr: tuple[str, str, str]) -> str:
    return f"{gvr[0]}/{gvr[1]}" if gvr[0] else gvr[1]


def _merge(base: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(base) if isinstance(base, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = _merge(out.get(k), v)
    return out


def _label_matches(labels: dict[str, str], selector: str) -> bool:
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            k, v = term.split("!=", 1)
            if labels.get(k.strip()) == v.strip():
                return False
        elif "=" in term:
            k, v = term.replace("==", "=").split("=", 1)
            if labels.get(k.strip()) != v.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def _field_matches(obj: dict[str, Any], selector: str) -> bool:
    meta = obj.get("metadata", {})
    for term in filter(None, selector.split(",")):
        field, _, want = term.replace("==", "=").partition("=")
        if field not in ("metadata.name", "metadata.namespace"):
            raise ApiError(400, "BadRequest", f"field label not supported: {field}")
        if meta.get(field.split(".")[1]) != want:
            return False
    return True


SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public")


class State:
    """The objects and the change log; touched only from the server's event loop."""

    def __init__(self, log_limit: int = 10_000) -> None:
        self.objects: dict[Key, dict[str, Any]] = {}
        self.log: list[Event] = []
        self.log_limit = log_limit
        self.compacted = 0  # events at or below this revision are gone
        # A real cluster's etcd has history before our first write: never revision 0.
        self.revision = 100
        self.counter = itertools.count(self.revision + 1)
        self.changed = asyncio.Condition()
        self.closing = False  # set at shutdown: open watches end
        self.denied: list[str] = []  # every refusal (RBAC or admission), for assertions
        self.tokens = auth.Tokens()
        # What every API server has before anyone writes: its system namespaces (join reads
        # kube-system's UID as the cluster's identity).
        for n, name in enumerate(SYSTEM_NAMESPACES, start=1):
            meta = {"name": name, "uid": str(uuid.uuid4()), "resourceVersion": str(n)}
            meta.update(generation=1, creationTimestamp=_now())
            gvr = ("", "v1", "namespaces")
            self.objects[(gvr, None, name)] = {"apiVersion": "v1", "kind": "Namespace",
                                               "metadata": meta}  # fmt: skip

    async def close(self) -> None:
        self.closing = True
        async with self.changed:
            self.changed.notify_all()

    def _bump(self) -> int:
        self.revision = next(self.counter)
        return self.revision

    async def _record(self, gvr: tuple[str, str, str], etype: str, obj: dict[str, Any]) -> None:
        self.log.append(Event(self.revision, gvr, etype, copy.deepcopy(obj)))
        if len(self.log) > self.log_limit:
            drop = len(self.log) - self.log_limit
            self.compacted = self.log[drop - 1].rv
            del self.log[:drop]
        async with self.changed:
            self.changed.notify_all()

    async def create(
        self,
        gvr: tuple[str, str, str],
        kind: Kind,
        ns: str | None,
        body: Any,
        admit: Admit | None = None,
    ) -> dict[str, Any]:
        if not isinstance(body, dict) or not body.get("metadata", {}).get("name"):
            raise ApiError(422, "Invalid", "metadata.name: Required value: name is required")
        obj = copy.deepcopy(body)
        meta = obj["metadata"]
        if kind.namespaced:
            if ns is None or meta.get("namespace", ns) != ns:
                raise ApiError(
                    400, "BadRequest", "the namespace of the object does not match the request"
                )
            meta["namespace"] = ns
        else:
            meta.pop("namespace", None)
        key: Key = (gvr, ns if kind.namespaced else None, meta["name"])
        if key in self.objects:
            raise ApiError(409, "AlreadyExists", f'{gvr[2]} "{meta["name"]}" already exists')
        if kind.status:
            obj.pop("status", None)
        obj["apiVersion"], obj["kind"] = _api_version(gvr), kind.kind
        for server_only in ("resourceVersion", "deletionTimestamp"):
            meta.pop(server_only, None)
        meta.update(uid=str(uuid.uuid4()), generation=1, creationTimestamp=_now())
        if admit is not None:
            admit("CREATE", None, obj)
        meta["resourceVersion"] = str(self._bump())
        self.objects[key] = obj
        await self._record(gvr, "ADDED", obj)
        return obj

    def get(self, key: Key) -> dict[str, Any]:
        obj = self.objects.get(key)
        if obj is None:
            raise ApiError(404, "NotFound", f'{key[0][2]} "{key[2]}" not found')
        return obj

    async def replace(
        self,
        key: Key,
        kind: Kind,
        body: Any,
        subresource: str | None,
        admit: Admit | None = None,
    ) -> dict[str, Any]:
        current = self.get(key)
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "the body must be an object")
        want = body.get("metadata", {}).get("resourceVersion")
        if not want:
            raise ApiError(
                422,
                "Invalid",
                "metadata.resourceVersion: Invalid value: must be specified for an update",
            )
        if want != current["metadata"]["resourceVersion"]:
            raise ApiError(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {key[0][2]} "{key[2]}": the object has been '
                "modified; please apply your changes to the latest version and try again",
            )
        if subresource == "status":
            if not kind.status:
                raise ApiError(404, "NotFound", f"{key[0][2]} has no status subresource")
            new = copy.deepcopy(current)
            new["status"] = copy.deepcopy(body.get("status", {}))
        elif subresource is None:
            new = copy.deepcopy(body)
            if kind.status:
                new.pop("status", None)
                if "status" in current:
                    new["status"] = copy.deepcopy(current["status"])
        else:
            raise ApiError(404, "NotFound", f"no subresource {subresource}")
        return await self._write(key, kind, current, new, admit)

    async def _write(
        self,
        key: Key,
        kind: Kind,
        current: dict[str, Any],
        new: dict[str, Any],
        admit: Admit | None = None,
    ) -> dict[str, Any]:
        new = copy.deepcopy(new)  # a merge patch shares unpatched parts with `current`
        meta, old_meta = new.setdefault("metadata", {}), current["metadata"]
        for field in (
            "uid",
            "creationTimestamp",
            "generation",
            "resourceVersion",
            "name",
            "namespace",
        ):
            if field in old_meta:
                meta[field] = old_meta[field]
            else:
                meta.pop(field, None)
        new["apiVersion"], new["kind"] = current["apiVersion"], current["kind"]
        body_of = lambda o: {k: v for k, v in o.items() if k not in ("metadata", "status")}  # noqa: E731
        if body_of(new) != body_of(current):
            meta["generation"] = int(old_meta.get("generation", 1)) + 1
        if admit is not None:
            admit("UPDATE", current, new)  # a no-op write is admitted (or denied) too
        if new == current:
            return current  # a no-op: no revision, no event
        meta["resourceVersion"] = str(self._bump())
        self.objects[key] = new
        await self._record(key[0], "MODIFIED", new)
        return new

    async def patch(
        self,
        key: Key,
        kind: Kind,
        content_type: str,
        body: bytes,
        params: dict[str, str],
        subresource: str | None = None,
        admit: Admit | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """Merge or apply patches; on `/status` only the status changes, elsewhere all but it."""
        if subresource not in (None, "status") or (subresource and not kind.status):
            raise ApiError(404, "NotFound", f"no subresource {subresource}")
        if content_type.startswith("application/apply-patch"):
            if not params.get("fieldManager"):
                raise ApiError(400, "BadRequest", "PATCH with apply requires fieldManager")
            applied = yaml.safe_load(body)
            if not isinstance(applied, dict):
                raise ApiError(400, "BadRequest", "the applied configuration must be an object")
            name = applied.get("metadata", {}).get("name")
            if name != key[2]:
                raise ApiError(400, "BadRequest", "the name of the object does not match the URL")
            if key not in self.objects:
                if subresource:
                    raise ApiError(404, "NotFound", f'{key[0][2]} "{key[2]}" not found')
                return 201, await self.create(key[0], kind, key[1], applied, admit)
            current = self.objects[key]
            new = _merge(current, applied)
        elif content_type.startswith("application/merge-patch+json"):
            current = self.get(key)
            new = _merge(current, json.loads(body))
            want = (json.loads(body).get("metadata") or {}).get("resourceVersion")
            if want and want != current["metadata"]["resourceVersion"]:
                raise ApiError(409, "Conflict", "the object has been modified")
        else:
            raise ApiError(
                415, "UnsupportedMediaType", f"the patch type {content_type} is not supported"
            )
        if subresource == "status":
            new = {**copy.deepcopy(current), "status": new.get("status", {})}
        elif kind.status:
            new["status"] = copy.deepcopy(current.get("status", {}))
            if not new["status"] and "status" not in current:
                new.pop("status")
        return 200, await self._write(key, kind, current, new, admit)

    async def delete(self, key: Key, admit: Admit | None = None) -> dict[str, Any]:
        obj = self.get(key)
        if admit is not None:
            admit("DELETE", obj, None)
        del self.objects[key]
        gone = copy.deepcopy(obj)
        gone["metadata"]["resourceVersion"] = str(self._bump())
        await self._record(key[0], "DELETED", gone)
        return gone

    def items(
        self, gvr: tuple[str, str, str], ns: str | None, params: dict[str, str]
    ) -> list[dict[str, Any]]:
        labels, fields = params.get("labelSelector", ""), params.get("fieldSelector", "")
        out = []
        for (g, o_ns, _), obj in sorted(
            self.objects.items(), key=lambda kv: (kv[0][1] or "", kv[0][2])
        ):
            if g != gvr or (ns is not None and o_ns != ns):
                continue
            if _label_matches(obj["metadata"].get("labels") or {}, labels) and _field_matches(
                obj, fields
            ):
                out.append(obj)
        return out

    def matches(
        self, event: Event, gvr: tuple[str, str, str], ns: str | None, params: dict[str, str]
    ) -> bool:
        if event.gvr != gvr:
            return False
        meta = event.object["metadata"]
        if ns is not None and meta.get("namespace") != ns:
            return False
        return _label_matches(
            meta.get("labels") or {}, params.get("labelSelector", "")
        ) and _field_matches(event.object, params.get("fieldSelector", ""))


@attrs.define(kw_only=True)
class ApiServer(kmock.KubernetesScaffold):  # type: ignore[misc]
    """kmock's scaffold (server, URL parsing, discovery) with `State` behind the resources."""

    log_limit: int = 10_000
    anonymous_admin: bool = True  # a request without a token: the admin (see tests/kubeauth.py)
    state: State | None = attrs.field(default=None, init=False)
    # Injected failures: (HTTP method, path prefix, status code), each answered once, in order.
    faults: list[tuple[str, str, int]] = attrs.field(factory=list, init=False)

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        if self.state is None:
            self.state = State(self.log_limit)
        state = self.state
        raw_headers = request._raw_request.headers if request._raw_request is not None else {}
        header = str(raw_headers.get("Authorization", ""))
        user = state.tokens.authenticate(header, state.objects, self.anonymous_admin)
        if user is None:
            return aiohttp.web.json_response(auth.UNAUTHORIZED.status(), status=401)
        target = parse_path(request.url.path)
        if target is None:  # discovery, /version, OpenAPI: any user (system:discovery)
            accept = request.headers.get("Accept", "")
            answer = discovery(request.url.path, accept)
            if answer is None:
                answer = openapi_v3(request.url.path) or openapi_v2(request.url.path, accept)
            if answer is None:
                error = ApiError(
                    404, "NotFound", "the server could not find the requested resource"
                )
                answer = aiohttp.web.json_response(error.status(), status=404)
            return answer
        gvr, ns, name, subresource = target
        kind = KINDS.get(gvr)
        verb = auth.verb_of(str(request.method.value), name, dict(request.params))
        resource = gvr[2] + (f"/{subresource.split('/')[0]}" if subresource else "")
        if not auth.authorize(user, verb, gvr[0], resource, ns, name, state.objects):
            denied = auth.forbidden(user, verb, gvr[0], resource, ns)
            state.denied.append(denied.message)
            return aiohttp.web.json_response(denied.status(), status=403)
        for fault in self.faults:
            method, prefix, code = fault
            if request.method.value == method and request.url.path.startswith(prefix):
                self.faults.remove(fault)
                error = ApiError(code, "Injected", f"injected HTTP {code}")
                headers = {"Retry-After": "0"} if code == 429 else {}
                return aiohttp.web.json_response(error.status(), status=code, headers=headers)
        try:
            if kind is None:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            admit = self._admission(state, user, gvr, kind, ns, subresource)
            return await self._serve(request, gvr, kind, state, ns, name, subresource, admit)
        except ApiError as exc:
            return aiohttp.web.json_response(exc.status(), status=exc.code)
        except auth.Refusal as refusal:
            state.denied.append(refusal.message)
            return aiohttp.web.json_response(refusal.status(), status=refusal.code)
        except auth.Unsupported as exc:  # loud: never admit what the double cannot evaluate
            error = ApiError(500, "InternalError", f"the double does not evaluate {exc}")
            return aiohttp.web.json_response(error.status(), status=500)

    @staticmethod
    def _admission(
        state: State,
        user: auth.UserInfo,
        gvr: tuple[str, str, str],
        kind: Kind,
        ns: str | None,
        subresource: str | None,
    ) -> Admit:
        """The admission step of a write: the applied policies, on the object as it would be."""

        def admit(operation: str, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
            name = ((new or old or {}).get("metadata") or {}).get("name", "")
            attrs = auth.Attributes(
                operation, gvr, kind.kind, subresource or "", ns if kind.namespaced else None,
                name, user,
            )  # fmt: skip
            auth.admit(attrs, old, new, state.objects)

        return admit

    async def _serve(
        self,
        request: kmock.Request,
        gvr: tuple[str, str, str],
        kind: Kind,
        state: State,
        ns: str | None,
        name: str | None,
        subresource: str | None,
        admit: Admit,
    ) -> aiohttp.web.StreamResponse:
        method = str(request.method.value)
        params = dict(request.params)
        if not kind.namespaced and ns is not None:
            raise ApiError(404, "NotFound", f"{gvr[2]} is not namespaced")
        if name is None:
            if method == "GET" and params.get("watch") in ("true", "1"):
                return await self._watch(request, gvr, kind, ns, params, state)
            if method == "GET":
                items = state.items(gvr, ns, params)
                revision = str(state.revision)
                if _wants_table(request.headers.get("Accept", "")):
                    columns = printer_columns(state, gvr)
                    return _json(table(items, columns, params.get("includeObject"), revision))
                return _json(
                    {
                        "apiVersion": _api_version(gvr),
                        "kind": f"{kind.kind}List",
                        "metadata": {"resourceVersion": revision},
                        "items": items,
                    }
                )
            if method == "POST":
                body = _decode(request.body)
                return _json(await state.create(gvr, kind, ns, body, admit), 201)
            raise ApiError(405, "MethodNotAllowed", f"{method} on a collection")
        if gvr == ("", "v1", "pods") and subresource and subresource.split("/")[0] == "proxy":
            return await self._proxy(request, state, ns, name, subresource)
        key: Key = (gvr, ns if kind.namespaced else None, name)
        if gvr == ("", "v1", "serviceaccounts") and subresource == "token":
            if method != "POST":
                raise ApiError(405, "MethodNotAllowed", f"{method} on serviceaccounts/token")
            return _json(token_request(state, key, _decode(request.body)), 201)
        if method == "GET":
            if subresource not in (None, "status"):
                raise ApiError(404, "NotFound", f"no subresource {subresource}")
            obj = state.get(key)
            if subresource is None and _wants_table(request.headers.get("Accept", "")):
                columns = printer_columns(state, gvr)
                rv = obj["metadata"]["resourceVersion"]
                return _json(table([obj], columns, params.get("includeObject"), rv))
            return _json(obj)
        if method == "PUT":
            body = _decode(request.body)
            return _json(await state.replace(key, kind, body, subresource, admit))
        if method == "PATCH":
            ctype = request.headers.get("Content-Type", "")
            code, obj = await state.patch(
                key, kind, ctype, request.body, params, subresource, admit
            )
            return _json(obj, code)
        if method == "DELETE":
            if subresource is not None:
                raise ApiError(405, "MethodNotAllowed", f"DELETE on {subresource}")
            return _json(await state.delete(key, admit))
        raise ApiError(405, "MethodNotAllowed", method)

    async def _proxy(
        self, request: kmock.Request, state: State, ns: str | None, name: str, subresource: str
    ) -> aiohttp.web.StreamResponse:
        """`pods/NAME[:PORT]/proxy/PATH`: the API server forwards to the pod. Here the "pod
        network" is the Unix socket its annotation names (tests run real floaters)."""
        pod = state.get((("", "v1", "pods"), ns, name.split(":")[0]))
        socket = (pod["metadata"].get("annotations") or {}).get(PROXY_SOCKET)
        if not socket:
            raise ApiError(503, "ServiceUnavailable", f"pod {name} is not reachable")
        path = "/" + subresource.removeprefix("proxy").lstrip("/")
        connector = aiohttp.UnixConnector(path=socket)
        try:
            async with (
                aiohttp.ClientSession(connector=connector) as session,
                session.request(
                    str(request.method.value),
                    f"http://pod{path}",
                    data=request.body,
                    headers={"Content-Type": "application/json"},
                ) as resp,  # fmt: skip
            ):
                body = await resp.read()
                return aiohttp.web.Response(
                    body=body, status=resp.status, content_type=resp.content_type
                )
        except aiohttp.ClientError as exc:
            raise ApiError(503, "ServiceUnavailable", f"error trying to reach pod: {exc}") from None

    async def _watch(
        self,
        request: kmock.Request,
        gvr: tuple[str, str, str],
        kind: Kind,
        ns: str | None,
        params: dict[str, str],
        state: State,
    ) -> aiohttp.web.StreamResponse:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + float(params.get("timeoutSeconds") or 1800)
        resp = aiohttp.web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request._raw_request)

        async def send(etype: str, obj: dict[str, Any]) -> None:
            await resp.write(json.dumps({"type": etype, "object": obj}).encode() + b"\n")

        since = params.get("resourceVersion") or "0"
        if since == "0":
            last = state.revision
            for obj in state.items(gvr, ns, params):
                await send("ADDED", obj)
        else:
            last = int(since)
            if last < state.compacted:
                gone = ApiError(
                    410, "Expired", f"too old resource version: {last} ({state.compacted})"
                )
                await send("ERROR", gone.status())
                await resp.write_eof()
                return resp
        while True:
            revs = [e.rv for e in state.log]
            for event in state.log[bisect.bisect_right(revs, last) :]:
                last = event.rv
                if state.matches(event, gvr, ns, params):
                    await send(event.type, event.object)  # more may land meanwhile
            remaining = deadline - loop.time()
            if remaining <= 0 or state.closing:
                break
            async with state.changed:
                if state.revision > last:
                    continue  # news arrived while we were sending
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(state.changed.wait(), remaining)
        await resp.write_eof()
        return resp


Target = tuple[tuple[str, str, str], str | None, str | None, str | None]


def token_request(state: State, account_key: Key, body: Any) -> dict[str, Any]:
    """`POST serviceaccounts/NAME/token`: a TokenRequest answered with a token for the account
    (it stops working when the account is deleted)."""
    account = state.get(account_key)
    spec = (body or {}).get("spec") or {} if isinstance(body, dict) else {}
    seconds = int(spec.get("expirationSeconds") or 3600)
    if seconds < 600:
        raise ApiError(
            422,
            "Invalid",
            "spec.expirationSeconds: may not specify a duration less than 10 minutes",
        )
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)
    return {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "metadata": {"name": account_key[2], "namespace": account_key[1],
                     "creationTimestamp": _now()},
        "spec": {"audiences": spec.get("audiences") or [], "expirationSeconds": seconds,
                 "boundObjectRef": None},
        "status": {"token": state.tokens.mint(account),
                   "expirationTimestamp": expires.strftime("%Y-%m-%dT%H:%M:%SZ")},
    }  # fmt: skip


def parse_path(path: str) -> Target | None:
    """/api/v1/... or /apis/G/V/... -> ((group, version, plural), namespace, name, subresource).

    Ours, not kmock's: kmock reads /api/v1/namespaces/NAME as a namespace without a resource."""
    parts = path.strip("/").split("/")
    if parts[0] == "api" and len(parts) >= 3:
        group, version, rest = "", parts[1], parts[2:]
    elif parts[0] == "apis" and len(parts) >= 4:
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    ns = None
    if rest[0] == "namespaces" and len(rest) >= 3:
        ns, rest = rest[1], rest[2:]
    name = rest[1] if len(rest) > 1 else None
    subresource = "/".join(rest[2:]) or None
    return (group, version, rest[0]), ns, name, subresource


def _decode(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        raise ApiError(400, "BadRequest", "the body is not JSON") from None


def _json(obj: dict[str, Any], code: int = 200) -> aiohttp.web.Response:
    return aiohttp.web.json_response(obj, status=code)


class RunningApiServer:
    """The double on a background event loop, reachable over HTTP from any thread or process."""

    def __init__(
        self,
        directory: Path,
        log_limit: int = 10_000,
        netns: str | None = None,
        address: str = "127.0.0.1",
        anonymous_admin: bool = True,
    ) -> None:
        """`netns`/`address`: listen there instead (a lab's fabric, for its nodes to reach).
        `anonymous_admin` False: a request without a token is `system:anonymous`."""
        self.server = ApiServer(log_limit=log_limit, anonymous_admin=anonymous_admin)
        self.netns, self.address = netns, address
        self.kubeconfig = directory / "kubeconfig"
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True, name="kube-apiserver")

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        with netns_entered(self.netns):  # the listening socket is made in this thread's netns
            self._loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        server_cls = functools.partial(aiohttp.test_utils.RawTestServer, handler_cancellation=True)
        async with kmock.Server(self.server, server_cls=server_cls, host=self.address) as srv:
            self.url = f"http://{self.address}:{srv.port}"
            self._ready.set()
            await self._stop.wait()
            if self.server.state is not None:
                await self.server.state.close()

    def __enter__(self) -> RunningApiServer:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the API server double did not start")
        self.kubeconfig.write_text(yaml.safe_dump(kubeconfig_for(self.url)))
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    def token(self, account: str, namespace: str = "kosmos-system") -> str:
        """A token for a service account, by TokenRequest as the admin (what kubelet asks for a
        pod's projected token); the account must exist."""
        request = urllib.request.Request(
            f"{self.url}/api/v1/namespaces/{namespace}/serviceaccounts/{account}/token",
            data=json.dumps({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                             "spec": {"expirationSeconds": 3600}}).encode(),
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}",
                     "Content-Type": "application/json"},
            method="POST",
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=10) as resp:
            return str(json.load(resp)["status"]["token"])

    def kubeconfig_with(self, path: Path, token: str) -> Path:
        """A kubeconfig for this server with another bearer token."""
        path.write_text(yaml.safe_dump(kubeconfig_for(self.url, token=token)))
        return path

    def objects(self, plural: str) -> Iterator[dict[str, Any]]:
        """A snapshot of every stored object of one plural (any group), for assertions."""
        state = self.server.state
        if state is None:
            return iter(())
        snapshot = [
            copy.deepcopy(o) for (gvr, _, _), o in list(state.objects.items()) if gvr[2] == plural
        ]
        return iter(snapshot)


def kubeconfig_for(url: str, context: str = "double", token: str = ADMIN_TOKEN) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": context, "cluster": {"server": url}}],
        "users": [{"name": context, "user": {"token": token}}],
        "contexts": [{"name": context, "context": {"cluster": context, "user": context}}],
        "current-context": context,
    }
