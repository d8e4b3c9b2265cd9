"""The Kubernetes API server double: kmock's HTTP server plus what a real API server does.

kmock (PyPI; by kopf's author) gives the aiohttp server, request parsing and the discovery
endpoints (/api, /apis, /version). Its own
`KubernetesEmulator` merges every write into a dict and lacks what our clients rely on
(machine-probe §3: no resourceVersion/uid/generation, 200 on create, PUT -> 404, no 409 on a
stale update, selectors ignored, no status subresource, watches ignore resourceVersion and
timeoutSeconds). So this shim keeps kmock's server and parser and holds the objects itself,
following the API server's rules:

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
- RBAC for service accounts: a bearer token `system:serviceaccount:NS:NAME` is authorized by
  the stored (Cluster)Roles and bindings (403 Forbidden otherwise, recorded in `denied`); any
  other token is an administrator;
- `pods/NAME:PORT/proxy/PATH` forwards to the Unix socket the pod's `PROXY_SOCKET` annotation
  names (the test plays kubelet and pod network: it runs the floaters). No finalizers, no graceful
  deletion, no admission, defaulting or schema validation (manifests are checked against the
  OpenAPI schema by their own tests).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import copy
import datetime as dt
import functools
import itertools
import json
import threading
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

from clusterlink.agent.netns import entered as netns_entered


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


SA_PREFIX = "system:serviceaccount:"  # a bearer token of this form is that service account


def _verb(method: str, name: str | None, params: dict[str, str]) -> str:
    if method == "GET":
        if params.get("watch") in ("true", "1"):
            return "watch"
        return "get" if name else "list"
    return {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(
        method, method.lower()
    )


def _rule_allows(
    rule: dict[str, Any], verb: str, group: str, resource: str, name: str | None
) -> bool:
    def has(field: str, value: str) -> bool:
        values = rule.get(field) or []
        return value in values or "*" in values

    names = rule.get("resourceNames") or []
    return (
        has("apiGroups", group)
        and has("resources", resource)
        and has("verbs", verb)
        and (not names or name in names)
    )


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
        self.denied: list[str] = []  # every RBAC refusal, for assertions

    def allowed(
        self, user: str, verb: str, group: str, resource: str, ns: str | None, name: str | None
    ) -> bool:
        """RBAC as the API server authorizes a service account: ClusterRoleBindings grant their
        ClusterRole everywhere, RoleBindings their Role or ClusterRole in their namespace."""
        sa_ns, _, sa_name = user.removeprefix(SA_PREFIX).partition(":")
        rbac = "rbac.authorization.k8s.io", "v1"

        def subjects_match(binding: dict[str, Any]) -> bool:
            return any(
                s.get("kind") == "ServiceAccount"
                and s.get("name") == sa_name
                and s.get("namespace") == sa_ns
                for s in binding.get("subjects") or []
            )

        def role_rules(ref: dict[str, Any], binding_ns: str | None) -> list[dict[str, Any]]:
            if ref.get("kind") == "ClusterRole":
                role = self.objects.get(((*rbac, "clusterroles"), None, ref["name"]))
            else:
                role = self.objects.get(((*rbac, "roles"), binding_ns, ref["name"]))
            return list((role or {}).get("rules") or [])

        for (gvr, b_ns, _), binding in self.objects.items():
            if gvr not in ((*rbac, "clusterrolebindings"), (*rbac, "rolebindings")):
                continue
            if not subjects_match(binding):
                continue
            if gvr[2] == "rolebindings" and b_ns != ns:
                continue
            for rule in role_rules(binding.get("roleRef") or {}, b_ns):
                if _rule_allows(rule, verb, group, resource, name):
                    return True
        return False

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
        self, gvr: tuple[str, str, str], kind: Kind, ns: str | None, body: Any
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
        self, key: Key, kind: Kind, body: Any, subresource: str | None
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
        return await self._write(key, kind, current, new)

    async def _write(
        self, key: Key, kind: Kind, current: dict[str, Any], new: dict[str, Any]
    ) -> dict[str, Any]:
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
        if new == current:
            return current  # a no-op: no revision, no event
        meta["resourceVersion"] = str(self._bump())
        self.objects[key] = new
        await self._record(key[0], "MODIFIED", new)
        return new

    async def patch(
        self, key: Key, kind: Kind, content_type: str, body: bytes, params: dict[str, str]
    ) -> tuple[int, dict[str, Any]]:
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
                return 201, await self.create(key[0], kind, key[1], applied)
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
        if kind.status:
            new["status"] = copy.deepcopy(current.get("status", {}))
            if not new["status"] and "status" not in current:
                new.pop("status")
        return 200, await self._write(key, kind, current, new)

    async def delete(self, key: Key) -> dict[str, Any]:
        obj = self.get(key)
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
    state: State | None = attrs.field(default=None, init=False)
    # Injected failures: (HTTP method, path prefix, status code), each answered once, in order.
    faults: list[tuple[str, str, int]] = attrs.field(factory=list, init=False)

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        target = parse_path(request.url.path)
        if target is None:
            return await super()._handle(request)  # discovery, /version
        if self.state is None:
            self.state = State(self.log_limit)
        gvr, ns, name, subresource = target
        kind = KINDS.get(gvr)
        raw_headers = request._raw_request.headers if request._raw_request is not None else {}
        user = str(raw_headers.get("Authorization", "")).removeprefix("Bearer ")
        if user.startswith(SA_PREFIX) and self.state is not None:
            verb = _verb(str(request.method.value), name, dict(request.params))
            resource = gvr[2] + (f"/{subresource.split('/')[0]}" if subresource else "")
            if not self.state.allowed(user, verb, gvr[0], resource, ns, name):
                scope = f'in the namespace "{ns}"' if ns else "at the cluster scope"
                denied = ApiError(
                    403,
                    "Forbidden",
                    f'{resource} is forbidden: User "{user}" cannot {verb} resource '
                    f'"{resource}" in API group "{gvr[0]}" {scope}',
                )
                self.state.denied.append(denied.message)
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
            return await self._serve(request, gvr, kind, self.state, ns, name, subresource)
        except ApiError as exc:
            return aiohttp.web.json_response(exc.status(), status=exc.code)

    async def _serve(
        self,
        request: kmock.Request,
        gvr: tuple[str, str, str],
        kind: Kind,
        state: State,
        ns: str | None,
        name: str | None,
        subresource: str | None,
    ) -> aiohttp.web.StreamResponse:
        method = str(request.method.value)
        params = dict(request.params)
        if not kind.namespaced and ns is not None:
            raise ApiError(404, "NotFound", f"{gvr[2]} is not namespaced")
        if name is None:
            if method == "GET" and params.get("watch") in ("true", "1"):
                return await self._watch(request, gvr, kind, ns, params, state)
            if method == "GET":
                return _json(
                    {
                        "apiVersion": _api_version(gvr),
                        "kind": f"{kind.kind}List",
                        "metadata": {"resourceVersion": str(state.revision)},
                        "items": state.items(gvr, ns, params),
                    }
                )
            if method == "POST":
                return _json(await state.create(gvr, kind, ns, _decode(request.body)), 201)
            raise ApiError(405, "MethodNotAllowed", f"{method} on a collection")
        if gvr == ("", "v1", "pods") and subresource and subresource.split("/")[0] == "proxy":
            return await self._proxy(request, state, ns, name, subresource)
        key: Key = (gvr, ns if kind.namespaced else None, name)
        if method == "GET":
            if subresource not in (None, "status"):
                raise ApiError(404, "NotFound", f"no subresource {subresource}")
            return _json(state.get(key))
        if method == "PUT":
            return _json(await state.replace(key, kind, _decode(request.body), subresource))
        if method == "PATCH":
            ctype = request.headers.get("Content-Type", "")
            code, obj = await state.patch(key, kind, ctype, request.body, params)
            return _json(obj, code)
        if method == "DELETE":
            return _json(await state.delete(key))
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
    ) -> None:
        """`netns`/`address`: listen there instead (a lab's fabric, for its nodes to reach)."""
        self.server = ApiServer(log_limit=log_limit)
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

    def objects(self, plural: str) -> Iterator[dict[str, Any]]:
        """A snapshot of every stored object of one plural (any group), for assertions."""
        state = self.server.state
        if state is None:
            return iter(())
        snapshot = [
            copy.deepcopy(o) for (gvr, _, _), o in list(state.objects.items()) if gvr[2] == plural
        ]
        return iter(snapshot)


def kubeconfig_for(url: str, context: str = "double", token: str = "test-token") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": context, "cluster": {"server": url}}],
        "users": [{"name": context, "user": {"token": token}}],
        "contexts": [{"name": context, "context": {"cluster": context, "user": context}}],
        "current-context": context,
    }
