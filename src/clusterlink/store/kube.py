"""The `kube` backend: the Store port on a Kubernetes API server (its etcd is our store).

URL: `kube://` (in-cluster config, else $KUBECONFIG / ~/.kube/config) or
`kube://?kubeconfig=PATH&context=NAME`. Our kinds map to REST paths: the `kosmos.io/v1alpha1`
CRDs (cluster-scoped, with a status subresource) and `coordination.k8s.io/v1` Leases (in
`kosmos-system` unless the object says otherwise). What the Store contract asks and how the API
server gives it:
- resourceVersion = etcd revision, global across kinds; `revision()` reads a list's revision;
- `update` is a PUT carrying the caller's resourceVersion (409 -> `Conflict`); an unconditional
  update (resourceVersion None) re-reads and retries, because custom resources refuse PUT
  without a resourceVersion;
- `update_status` is a PUT to the `/status` subresource; the server keeps status on a main-
  resource PUT, bumps `generation` on spec changes and makes no revision for a no-op;
- `watch` asks for events after `since` and, when the server ends a stream, resumes from the
  last revision it saw (BOOKMARK events advance it too); with a `timeout` it returns on time; a revision
  the server no longer holds (410 Gone) is `Expired` - callers list again, as client-go does;
- `apply_all` cannot be one transaction here: each object is created or updated in order;
- a Cluster's `spec.kubeconfig` (Kosmos' field: the member's credentials) is never stored on
  the Cluster, which every member reads: create, update and apply first write it to the Secret
  `clusterlink-kubeconfig-<cluster>` in kosmos-system (data key `kubeconfig`, the kubeconfig
  itself) and store the Cluster without it; deleting the Cluster deletes the Secret.
  `credentials` reads it back (the control plane's accounts may; members may not).
"""

from __future__ import annotations

import base64
import binascii
import builtins
import math
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import parse_qs

from clusterlink import constants as C
from clusterlink.api.cluster import Cluster, kubeconfig_text
from clusterlink.api.meta import Resource
from clusterlink.kubeclient.api import APPLY_PATCH, KubeApi
from clusterlink.kubeclient.errors import (
    ApiAlreadyExists,
    ApiConflict,
    ApiError,
    ApiGone,
    ApiNotFound,
    status_error,
)
from clusterlink.kubeclient.target import Target
from clusterlink.store.base import (
    AlreadyExists,
    Conflict,
    EventType,
    Expired,
    NotFound,
    R,
    ResourceList,
    StoreError,
    WatchEvent,
)

# How long one watch request lasts when nothing happens. Our watch threads are daemons and
# their loops wait on `stop` themselves, so a long-lived request costs nothing at shutdown and
# spares the API server re-established watches from every agent.
WATCH_SERVER_TIMEOUT = 60.0
_UNCONDITIONAL_TRIES = 20
MIN_WRITE_TIMEOUT = 0.5  # a bounded write's floor: an HTTP round trip cannot take no time


_STORE_ERRORS: tuple[tuple[type[ApiError], type[StoreError]], ...] = (
    (ApiNotFound, NotFound),
    (ApiAlreadyExists, AlreadyExists),
    (ApiConflict, Conflict),
    (ApiGone, Expired),
)


def store_error(exc: ApiError) -> StoreError:
    """The one place a Kubernetes client error becomes the Store's error."""
    for api_error, error in _STORE_ERRORS:
        if isinstance(exc, api_error):
            return error(str(exc))
    return StoreError(str(exc))


class MappedApi:
    """The client's two calls the store makes, with client errors as Store errors."""

    def __init__(self, api: KubeApi) -> None:
        self.api = api

    def request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            return self.api.request(method, path, **kwargs)
        except ApiError as exc:
            raise store_error(exc) from None

    def watch_lines(
        self, path: str, params: dict[str, str], read_timeout: float
    ) -> Iterator[dict[str, Any]]:
        try:
            yield from self.api.watch_lines(path, params, read_timeout)
        except ApiError as exc:
            raise store_error(exc) from None

    def close(self) -> None:
        self.api.close()


def _bounded(timeout: float | None) -> dict[str, Any]:
    """Request options for a write that may take at most `timeout` seconds: one try (no
    client retries), at least MIN_WRITE_TIMEOUT for the round trip. The server may still
    apply a write whose answer came too late; lease callers allow for that."""
    if timeout is None:
        return {}
    return {"timeout": max(timeout, MIN_WRITE_TIMEOUT), "retries": 0}


def collection_path(cls: type[Resource], namespace: str | None = None) -> str:
    group_version = cls.API_VERSION
    prefix = f"/apis/{group_version}" if "/" in group_version else f"/api/{group_version}"
    if cls.NAMESPACED:
        return f"{prefix}/namespaces/{namespace or C.DEFAULT_NAMESPACE}/{cls.PLURAL}"
    return f"{prefix}/{cls.PLURAL}"


def object_path(cls: type[Resource], name: str, namespace: str | None = None) -> str:
    return f"{collection_path(cls, namespace)}/{name}"


class KubeStore:
    """`Store` over the Kubernetes API. Thread-safe; one per process is enough."""

    def __init__(self, api: KubeApi, watch_timeout: float = WATCH_SERVER_TIMEOUT) -> None:
        self.client = api
        self.api = MappedApi(api)
        self.watch_timeout = watch_timeout

    @classmethod
    def open(cls, target: Target) -> KubeStore:
        try:
            return cls(KubeApi(target))
        except ApiError as exc:
            raise store_error(exc) from None

    # -- helpers ----------------------------------------------------------------------------

    def _ns(self, obj: Resource) -> str | None:
        if not type(obj).NAMESPACED:
            return None
        return obj.metadata.namespace or C.DEFAULT_NAMESPACE

    @staticmethod
    def _what(cls: type[Resource], name: str) -> str:
        return f"{cls.KIND} {name}"

    @staticmethod
    def _body(obj: Resource) -> dict[str, Any]:
        data = obj.to_dict()
        meta = data["metadata"]
        meta.pop("deletionTimestamp", None)  # the server's to set
        if type(obj).NAMESPACED:
            meta.setdefault("namespace", C.DEFAULT_NAMESPACE)
        return data

    # -- a member's credentials -------------------------------------------------------------

    @staticmethod
    def _secret_path(cluster: str, collection: bool = False) -> str:
        base = f"/api/v1/namespaces/{C.DEFAULT_NAMESPACE}/secrets"
        return base if collection else f"{base}/{C.CREDENTIALS_SECRET_PREFIX}{cluster}"

    def put_credentials(self, cluster: str, kubeconfig: str) -> None:
        """Create or replace the Secret holding `cluster`'s kubeconfig (its text)."""
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": f"{C.CREDENTIALS_SECRET_PREFIX}{cluster}",
                "namespace": C.DEFAULT_NAMESPACE,
                "labels": {C.CLUSTER_LABEL: cluster, "app.kubernetes.io/part-of": "clusterlink"},
            },
            "type": "Opaque",
            "data": {"kubeconfig": base64.b64encode(kubeconfig.encode()).decode()},
        }
        self.api.request(
            "PATCH",
            self._secret_path(cluster),
            params={"fieldManager": self.client.field_manager, "force": "true"},
            body=secret,
            content_type=APPLY_PATCH,
            what=f"Secret {C.DEFAULT_NAMESPACE}/{C.CREDENTIALS_SECRET_PREFIX}{cluster}",
        )

    def credentials(self, cluster: str) -> str | None:
        """`cluster`'s kubeconfig (text) from its Secret; None when it has none."""
        try:
            secret = self.api.request("GET", self._secret_path(cluster))
        except NotFound:
            return None
        raw = (secret.get("data") or {}).get("kubeconfig")
        try:
            return base64.b64decode(raw, validate=True).decode() if raw else None
        except (binascii.Error, UnicodeDecodeError):
            return None

    def delete_credentials(self, cluster: str) -> bool:
        try:
            self.api.request("DELETE", self._secret_path(cluster))
        except NotFound:
            return False
        return True

    def _stored_form(self, obj: R) -> R:
        """A Cluster carrying a kubeconfig: the kubeconfig to its Secret, the Cluster without."""
        if not isinstance(obj, Cluster):
            return obj
        text = kubeconfig_text(obj.spec.kubeconfig)
        if text is None:
            return obj
        self.put_credentials(obj.name, text)
        spec = obj.spec.model_copy(update={"kubeconfig": None})
        return obj.model_copy(update={"spec": spec})

    # -- Store ------------------------------------------------------------------------------

    def create(self, obj: R, *, timeout: float | None = None) -> R:
        obj = self._stored_form(obj)
        cls = type(obj)
        data = self.api.request(
            "POST",
            collection_path(cls, self._ns(obj)),
            body=self._body(obj),
            what=self._what(cls, obj.name),
            **_bounded(timeout),
        )
        return cls.model_validate(data)

    def get(self, cls: type[R], name: str, namespace: str | None = None) -> R:
        data = self.api.request(
            "GET", object_path(cls, name, namespace), what=self._what(cls, name)
        )
        return cls.model_validate(data)

    def list(self, cls: type[R], labels: dict[str, str] | None = None) -> ResourceList[R]:
        params = {"labelSelector": format_selector(labels)} if labels else {}
        path = collection_path(cls)  # namespaced kinds: kosmos-system (our RBAC is a Role there)
        data = self.api.request("GET", path, params=params, what=f"list {cls.PLURAL}")
        out: ResourceList[R] = ResourceList(
            sorted(
                (cls.model_validate(_typed(cls, item)) for item in data.get("items") or []),
                key=lambda o: o.key,
            )
        )
        out.resource_version = int(data.get("metadata", {}).get("resourceVersion") or 0)
        return out

    def _put(self, obj: R, suffix: str, timeout: float | None = None) -> R:
        cls = type(obj)
        path = object_path(cls, obj.name, self._ns(obj)) + suffix
        what = self._what(cls, obj.name)
        if obj.metadata.resource_version is not None:
            return cls.model_validate(
                self.api.request("PUT", path, body=self._body(obj), what=what, **_bounded(timeout))
            )
        for _ in range(_UNCONDITIONAL_TRIES):
            current = self.get(cls, obj.name, self._ns(obj))
            body = self._body(obj)
            body["metadata"]["resourceVersion"] = current.metadata.resource_version
            try:
                return cls.model_validate(self.api.request("PUT", path, body=body, what=what))
            except Conflict:
                continue
        raise Conflict(f"{what}: stale resourceVersion {_UNCONDITIONAL_TRIES} times in a row")

    def update(self, obj: R, *, timeout: float | None = None) -> R:
        return self._put(self._stored_form(obj), "", timeout)

    def update_status(self, obj: R) -> R:
        if not type(obj).HAS_STATUS:
            raise StoreError(f"{type(obj).KIND} has no status")
        return self._put(obj, "/status")

    def delete(self, cls: type[R], name: str, namespace: str | None = None) -> R:
        path = object_path(cls, name, namespace)
        what = self._what(cls, name)
        data = self.api.request("DELETE", path, what=what)
        if cls is Cluster:
            self.delete_credentials(name)
        if data.get("kind") == cls.KIND:
            return cls.model_validate(data)
        # Some servers answer a Status instead of the object: its details name it.
        details = data.get("details") or {}
        meta: dict[str, Any] = {"name": details.get("name") or name}
        if cls.NAMESPACED:
            meta["namespace"] = namespace or C.DEFAULT_NAMESPACE
        return cls.model_validate({"metadata": meta})

    def apply_all(self, objects: Sequence[Resource]) -> builtins.list[Resource]:
        self._check_versions(objects)
        out: builtins.list[Resource] = []
        for given in objects:
            obj = self._stored_form(given)
            cls = type(obj)
            try:
                if obj.metadata.resource_version is not None:
                    written: Resource = self.update(obj)  # 409 if it went stale meanwhile
                else:
                    written = self.create(obj)
            except AlreadyExists:
                unconditional = obj.model_copy(deep=True)
                unconditional.metadata.resource_version = None
                written = self.update(unconditional)
            if cls.HAS_STATUS and "status" in obj.model_fields_set:
                with_status = written.model_copy(update={"status": getattr(obj, "status")})  # noqa: B009
                written = self.update_status(with_status)
            out.append(written)
        return out

    def patch_all(self, objects: Sequence[Resource]) -> builtins.list[str]:
        """No transactions here: per object, a read and a PUT carrying what was read (409:
        read again), as the network-manager did itself."""
        written: builtins.list[str] = []
        for given in objects:
            if self._patch(given):
                written.append(given.key)
        return written

    def _patch(self, given: Resource) -> bool:
        cls = type(given)
        ns = self._ns(given)
        for _ in range(_UNCONDITIONAL_TRIES):
            try:
                current = self.get(cls, given.name, ns)
            except NotFound:
                try:
                    fresh = given.model_copy(deep=True)
                    fresh.metadata.resource_version = None
                    self.create(fresh)
                    return True
                except AlreadyExists:
                    continue
            labels = {**current.metadata.labels, **given.metadata.labels}
            same_spec = getattr(current, "spec", None) == getattr(given, "spec", None)
            if same_spec and labels == current.metadata.labels:
                return False
            meta = current.metadata.model_copy(update={"labels": labels})
            update: dict[str, Any] = {"metadata": meta}
            if "spec" in type(given).model_fields:
                update["spec"] = getattr(given, "spec")  # noqa: B009
            try:
                self.update(current.model_copy(update=update))  # with current's resourceVersion
                return True
            except Conflict:
                continue
        raise Conflict(
            f"{self._what(cls, given.name)}: stale resourceVersion {_UNCONDITIONAL_TRIES} "
            "times in a row"
        )

    def _check_versions(self, objects: Sequence[Resource]) -> None:
        """kubectl's rule, before anything is written (no transactions here): a
        resourceVersion in what is applied must be the object's current one."""
        for obj in objects:
            want = obj.metadata.resource_version
            if want is None:
                continue
            cls = type(obj)
            try:
                have = self.get(cls, obj.name, self._ns(obj)).metadata.resource_version
            except NotFound:
                raise Conflict(
                    f"{self._what(cls, obj.name)}: resourceVersion {want} given, but the "
                    "object does not exist"
                ) from None
            if have != want:
                raise Conflict(
                    f"{self._what(cls, obj.name)} was changed by someone else (resourceVersion "
                    f"{want} is stale, current is {have})"
                )

    def revision(self) -> int:
        data = self.api.request(
            "GET", collection_path(Cluster), params={"limit": "1"}, what="list clusters"
        )
        return int(data.get("metadata", {}).get("resourceVersion") or 0)

    def kind_revision(self, cls: type[Resource]) -> int | None:
        return None  # the API server's resourceVersions are global: no cheap per-kind one

    def watch(
        self,
        cls: type[R],
        since: int,
        stop: threading.Event | None = None,
        timeout: float | None = None,
        name: str | None = None,
    ) -> Iterator[WatchEvent[R]]:
        deadline = None if timeout is None else time.monotonic() + timeout
        path = collection_path(cls)  # namespaced kinds: kosmos-system (our RBAC is a Role there)
        last = since
        failures = 0
        while True:
            if stop is not None and stop.is_set():
                return
            if deadline is None:
                server_timeout = self.watch_timeout
            else:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                server_timeout = min(self.watch_timeout, remaining)
            params = {
                "resourceVersion": str(last),
                "allowWatchBookmarks": "true",
                "timeoutSeconds": str(max(1, math.ceil(server_timeout))),
            }
            if name is not None:
                params["fieldSelector"] = f"metadata.name={name}"
            # The server ends the stream after timeoutSeconds; the read timeout (a little
            # longer, or the caller's deadline) catches a connection that died silently.
            read = server_timeout if deadline is not None else server_timeout + 15.0
            try:
                for event in self.api.watch_lines(path, params, max(read, 0.01)):
                    etype = event.get("type")
                    raw = event.get("object") or {}
                    if etype == "ERROR":
                        code = int(raw.get("code") or 500)
                        err = store_error(status_error(code, raw, f"watch {cls.PLURAL}"))
                        if isinstance(err, Expired):
                            raise Expired(
                                f"watch {cls.PLURAL} from revision {last}: the API server no "
                                "longer holds it (410 Gone); list again and watch from there"
                            )
                        raise err
                    rv = int(raw.get("metadata", {}).get("resourceVersion") or last)
                    if etype == "BOOKMARK":
                        last = max(last, rv)
                        continue
                    if etype not in ("ADDED", "MODIFIED", "DELETED"):
                        continue
                    last = rv
                    failures = 0
                    kind: EventType = etype
                    yield WatchEvent(kind, cls.model_validate(_typed(cls, raw)), rv)
                    if stop is not None and stop.is_set():
                        return
            except TimeoutError:
                continue
            except ConnectionError as exc:
                failures += 1
                if failures > 5:
                    raise StoreError(str(exc)) from None
                time.sleep(min(0.1 * 2**failures, 2.0))

    def close(self) -> None:
        self.api.close()


def _typed(cls: type[Resource], data: dict[str, Any]) -> dict[str, Any]:
    """List items and watch objects may lack apiVersion/kind: fill them in."""
    if "kind" not in data or "apiVersion" not in data:
        data = {**data, "apiVersion": cls.API_VERSION, "kind": cls.KIND}
    return data


def format_selector(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def parse_kube_url(rest: str) -> Target:
    """`kube://` or `kube://?kubeconfig=PATH&context=NAME` -> Target."""
    host, _, query = rest.partition("?")
    if host.strip("/"):
        raise StoreError(
            f"store URL kube://{rest}: expected kube:// or kube://?kubeconfig=PATH&context=NAME"
        )
    values = parse_qs(query, keep_blank_values=False)
    unknown = set(values) - {"kubeconfig", "context"}
    if unknown:
        raise StoreError(
            f"store URL kube://{rest}: unknown parameter(s) {', '.join(sorted(unknown))}"
        )
    return Target(
        kubeconfig=values.get("kubeconfig", [None])[-1], context=values.get("context", [None])[-1]
    )


def kube_url(kubeconfig: str | None = None, context: str | None = None) -> str:
    parts = [f"kubeconfig={kubeconfig}"] if kubeconfig else []
    parts += [f"context={context}"] if context else []
    return "kube://" + ("?" + "&".join(parts) if parts else "")
