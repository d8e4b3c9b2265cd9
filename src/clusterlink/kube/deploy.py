"""Our objects on a Kubernetes cluster: server-side apply and removal of manifests, the
Cluster object, the member's identity in the control cluster and the control kubeconfig
members mount.

Objects are written with server-side apply (field manager `kosmosctl`, forced), so running a
command twice changes nothing and a user's own fields on our objects survive. The member's
kubeconfig is given to the store on the Cluster (as Kosmos' `spec.kubeconfig`), which keeps it
in a Secret of the control cluster (`clusterlink.store.kube`), so `unjoin` and `uninstall`
need only the control cluster. What a member gets is a kubeconfig of the control cluster with a
token of its own account, by TokenRequest - never the caller's credentials. The use cases
(install, join, ...) that use these are `clusterlink.federation.kube`.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml

from clusterlink.api.cluster import Cluster, ClusterLinkOptions, ClusterSpec, kubeconfig_text
from clusterlink.api.meta import ObjectMeta
from clusterlink.inputs import read_yaml
from clusterlink.kube import DeployError
from clusterlink.kube import manifests as m
from clusterlink.kubeclient.api import APPLY_PATCH, KubeApi
from clusterlink.kubeclient.errors import ApiError, ApiNotFound
from clusterlink.store.base import Store, StoreError
from clusterlink.store.kube import KubeStore

Progress = Callable[[str], None]
FIELD_MANAGER = "kosmosctl"
# How long a member's token lasts (asked; an API server may cap it with
# --service-account-max-token-expiration). `join` again renews it; `unjoin` revokes it by
# deleting the account.
TOKEN_SECONDS = 365 * 24 * 3600
# The control cluster's own member reaches its API server in-cluster.
IN_CLUSTER = {
    "server": "https://kubernetes.default.svc",
    "certificate-authority": "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt",
}
REDACTED = "<redacted>"


@dataclass(frozen=True)
class KubeLinkOptions:
    network_type: str = "gateway"
    ip_family: str = "ipv4"
    cni: str = "calico"
    default_nic: str = "*"
    image: str = m.DEFAULT_IMAGE
    service_cidrs: tuple[str, ...] = ()


def apply(api: KubeApi, objects: list[m.Obj], progress: Progress | None = None) -> int:
    """Server-side apply every object in order; returns how many the server changed."""
    changed = 0
    for obj in objects:
        before = _resource_version(api, obj)
        try:
            out = api.request(
                "PATCH",
                m.object_path(obj),
                params={"fieldManager": FIELD_MANAGER, "force": "true"},
                body=obj,
                content_type=APPLY_PATCH,
                what=m.describe(obj),
            )
        except ApiError as exc:
            raise DeployError(f"applying {m.describe(obj)}: {exc}") from None
        if out.get("metadata", {}).get("resourceVersion") != before:
            changed += 1
            if progress:
                progress(f"{'created' if before is None else 'updated'} {m.describe(obj)}")
    return changed


def _resource_version(api: KubeApi, obj: m.Obj) -> str | None:
    try:
        got = api.request("GET", m.object_path(obj))
    except ApiNotFound:
        return None
    return str(got.get("metadata", {}).get("resourceVersion"))


def remove(api: KubeApi, objects: list[m.Obj], progress: Progress | None = None) -> int:
    """Delete in reverse order (workloads before their accounts); absent objects are fine."""
    removed = 0
    for obj in reversed(objects):
        try:
            api.request("DELETE", m.object_path(obj), what=m.describe(obj))
        except ApiNotFound:
            continue
        except ApiError as exc:
            raise DeployError(f"deleting {m.describe(obj)}: {exc}") from None
        removed += 1
        if progress:
            progress(f"deleted {m.describe(obj)}")
    return removed


def control_cluster_of(path: str) -> dict[str, Any]:
    """The control cluster as members will reach it: the `cluster` entry (server, CA) of the
    kubeconfig's current context. Its user is never passed on; the CA must be embedded."""
    data = read_yaml(path, "kubeconfig")  # InputError: a one-line refusal, never the content
    if not isinstance(data, dict) or not data.get("current-context"):
        raise DeployError(f"kubeconfig {path}: not a kubeconfig with a current context")
    clusters = _minify(data)["clusters"]
    entry = (clusters[0].get("cluster") if clusters else None) or {}
    if not isinstance(entry, dict) or not entry.get("server"):
        raise DeployError(f"kubeconfig {path}: the current context's cluster has no server")
    if "certificate-authority" in entry:
        raise DeployError(
            f"kubeconfig {path} refers to a file (certificate-authority) that member pods "
            "cannot read; give one with embedded data: `kubectl config view --flatten --minify`"
        )
    return dict(entry)


def member_control_kubeconfig(cluster: dict[str, Any], account: str, token: str) -> str:
    """The kubeconfig a member mounts: the control cluster, and the member account's token."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "control", "cluster": cluster}],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [{"name": "control", "context": {"cluster": "control", "user": account}}],
        "current-context": "control",
    }
    return str(yaml.safe_dump(config, sort_keys=False))


def request_token(api: KubeApi, account: str, seconds: int = TOKEN_SECONDS) -> tuple[str, str]:
    """A token of `account` (kosmos-system) by TokenRequest: (token, expirationTimestamp)."""
    body = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {"expirationSeconds": seconds},
    }
    path = f"/api/v1/namespaces/{m.NS}/serviceaccounts/{account}/token"
    try:
        out = api.request("POST", path, body=body, what=f"TokenRequest for {account}")
    except ApiError as exc:
        raise DeployError(f"a token for ServiceAccount {m.NS}/{account}: {exc}") from None
    status = out.get("status") or {}
    if not status.get("token"):
        raise DeployError(f"TokenRequest for {account}: the answer holds no token")
    return str(status["token"]), str(status.get("expirationTimestamp") or "")


def redacted(objects: list[m.Obj]) -> list[m.Obj]:
    """The objects with every Secret's data and every Cluster's kubeconfig replaced by
    `<redacted>` (what dry runs print unless asked for secrets)."""
    out = []
    for obj in objects:
        if obj.get("kind") == "Secret":
            obj = {**obj}
            for key in ("data", "stringData"):
                if key in obj:
                    obj[key] = dict.fromkeys(obj[key], REDACTED)
        elif obj.get("kind") == "Cluster" and (obj.get("spec") or {}).get("kubeconfig"):
            obj = {**obj, "spec": {**obj["spec"], "kubeconfig": REDACTED}}
        out.append(obj)
    return out


def _minify(data: dict[str, Any]) -> dict[str, Any]:
    """Only the current context, its cluster and its user (kubectl's --minify)."""
    current = data["current-context"]
    contexts = _named(data, "contexts", current)
    if not contexts:
        raise DeployError(f"kubeconfig: current context {str(current)[:60]!r} is not defined")
    ref = contexts[0].get("context")
    ref = ref if isinstance(ref, dict) else {}
    return {
        **{k: v for k, v in data.items() if k not in ("clusters", "users", "contexts")},
        "contexts": contexts,
        "clusters": _named(data, "clusters", ref.get("cluster")),
        "users": _named(data, "users", ref.get("user")),
    }


def _named(data: dict[str, Any], section: str, name: Any) -> list[dict[str, Any]]:
    """The entries of a kubeconfig section (a list of {name, ...}) called `name`; entries
    that are not mappings (a hand-edited or broken file) are no match."""
    entries = data.get(section)
    if not isinstance(entries, list):
        return []
    return [e for e in entries if isinstance(e, dict) and e.get("name") == name]


def cluster_object(
    name: str, member_kubeconfig: str, options: KubeLinkOptions, cluster_id: str = ""
) -> Cluster:
    link = ClusterLinkOptions(
        network_type=options.network_type,
        ip_family=options.ip_family,
        cni=options.cni,
        default_nic_name=options.default_nic,
    )
    return Cluster(
        metadata=ObjectMeta(name=name),
        spec=ClusterSpec(
            kubeconfig=base64.b64encode(member_kubeconfig.encode()).decode(),
            cluster_id=cluster_id,
            cluster_link_options=link,
        ),
    )


def member_objects(name: str, options: KubeLinkOptions, control_kubeconfig: str) -> list[m.Obj]:
    return m.member(
        m.MemberSpec(
            cluster=name,
            image=options.image,
            network_type=options.network_type,
            control_kubeconfig=control_kubeconfig,
            service_cidrs=options.service_cidrs,
        )
    )


def member_kubeconfig_of(store: Store, cluster: Cluster) -> str | None:
    """The member kubeconfig of a Kubernetes Cluster (None for lab clusters): from its Secret
    on the kube store, else (another store, or one written before) from `spec.kubeconfig`."""
    if isinstance(store, KubeStore):
        try:
            text = store.credentials(cluster.name)
        except StoreError as exc:
            raise DeployError(f"the credentials of Cluster {cluster.name}: {exc}") from None
        if text is not None:
            return text
    return kubeconfig_text(cluster.spec.kubeconfig)
