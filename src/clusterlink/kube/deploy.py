"""Our objects on a Kubernetes cluster: server-side apply and removal of manifests, the
Cluster object that carries a member's kubeconfig, the control kubeconfig members mount.

Objects are written with server-side apply (field manager `kosmosctl`, forced), so running a
command twice changes nothing and a user's own fields on our objects survive. The Cluster
object keeps the member's kubeconfig (base64, as Kosmos' `spec.kubeconfig`), so `unjoin` and
`uninstall` need only the control cluster. The use cases (install, join, ...) that use these
are `clusterlink.federation.kube`.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from clusterlink.api.cluster import Cluster, ClusterLinkOptions, ClusterSpec
from clusterlink.api.meta import ObjectMeta
from clusterlink.kube import DeployError
from clusterlink.kube import manifests as m
from clusterlink.kubeclient.api import APPLY_PATCH, KubeApi
from clusterlink.kubeclient.errors import ApiError, ApiNotFound

Progress = Callable[[str], None]
FIELD_MANAGER = "kosmosctl"
_FILE_REFS = ("certificate-authority:", "client-certificate:", "client-key:", "tokenFile:")


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


def control_kubeconfig_text(path: str) -> str:
    """The control cluster's kubeconfig as members will mount it: only its current context
    (members get no other cluster's credentials), and it must embed its files."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise DeployError(f"kubeconfig {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise DeployError(f"kubeconfig {path}: not YAML ({exc})") from None
    if not isinstance(data, dict):
        raise DeployError(f"kubeconfig {path}: not a kubeconfig")
    minified = _minify(data) if data.get("current-context") else data
    text = str(yaml.safe_dump(minified, sort_keys=False))
    refs = [r.rstrip(":") for r in _FILE_REFS if r in text]
    if refs:
        raise DeployError(
            f"kubeconfig {path} refers to files ({', '.join(refs)}) that member pods cannot "
            "read; give one with embedded data: `kubectl config view --flatten --minify`"
        )
    return text


def _minify(data: dict[str, Any]) -> dict[str, Any]:
    """Only the current context, its cluster and its user (kubectl's --minify)."""
    current = data["current-context"]
    contexts = [c for c in data.get("contexts") or [] if c.get("name") == current]
    if not contexts:
        raise DeployError(f"kubeconfig: current context {current!r} is not defined")
    ref = contexts[0].get("context") or {}
    return {
        **{k: v for k, v in data.items() if k not in ("clusters", "users", "contexts")},
        "contexts": contexts,
        "clusters": [c for c in data.get("clusters") or [] if c.get("name") == ref.get("cluster")],
        "users": [u for u in data.get("users") or [] if u.get("name") == ref.get("user")],
    }


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


def member_objects(
    name: str, options: KubeLinkOptions, same_cluster: bool, control_kubeconfig: str | None
) -> list[m.Obj]:
    return m.member(
        m.MemberSpec(
            cluster=name,
            image=options.image,
            network_type=options.network_type,
            same_cluster_as_control=same_cluster,
            control_kubeconfig=None if same_cluster else control_kubeconfig,
            service_cidrs=options.service_cidrs,
        )
    )


def member_kubeconfig_of(cluster: Cluster) -> str | None:
    """The member kubeconfig a Kubernetes Cluster carries (None for lab clusters)."""
    raw = cluster.spec.kubeconfig
    if not raw:
        return None
    try:
        text = base64.b64decode(raw, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError:
        return None
    return text if isinstance(data, dict) and "clusters" in data else None
