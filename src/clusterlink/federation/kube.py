"""The Kubernetes federation: install / join / unjoin / uninstall on real clusters
(`KubeFederation`; the module functions are its steps). Manifests and their server-side apply
are `clusterlink.kube.deploy`; the store is the control cluster's API (`kube://`).

Each member gets its own identity in the control cluster (ServiceAccount
`clusterlink-member-<cluster>`, bound to the member roles, confined to its own cluster's
objects by the shipped admission policy) and a kubeconfig with a token of it; the caller's
credentials stay with the caller."""

from __future__ import annotations

import contextlib
import time
from typing import Any

from clusterlink import constants as C
from clusterlink.api.cluster import Cluster
from clusterlink.api.net import normalize_cidr
from clusterlink.errors import BadInput
from clusterlink.federation.base import LinkOptions, Progress
from clusterlink.federation.control import read_kubeconfig
from clusterlink.federation.membership import (
    forget,
    nodeconfigs_gone,
    refuse_duplicate,
    wait_until,
)
from clusterlink.kube import DeployError
from clusterlink.kube import manifests as m
from clusterlink.kube.deploy import (
    FIELD_MANAGER,
    IN_CLUSTER,
    KubeLinkOptions,
    apply,
    cluster_object,
    control_cluster_of,
    member_control_kubeconfig,
    member_kubeconfig_of,
    member_objects,
    redacted,
    remove,
    request_token,
)
from clusterlink.kube.member import remove_calico_pools
from clusterlink.kubeclient.api import KubeApi
from clusterlink.kubeclient.errors import ApiNotFound
from clusterlink.kubeclient.target import Target
from clusterlink.store.base import NotFound, Store


def install(
    control: KubeApi,
    store: Store,
    kubeconfig_text: str,
    name: str,
    options: KubeLinkOptions,
    progress: Progress,
) -> None:
    changed = apply(control, m.control_plane(options.image), progress)
    progress(f"control plane applied ({changed} object(s) changed)")
    join(control, control, store, name, kubeconfig_text, IN_CLUSTER, options, progress)


def join(
    member: KubeApi,
    control: KubeApi,
    store: Store,
    name: str,
    member_kubeconfig: str,
    control_cluster: dict[str, Any],
    options: KubeLinkOptions,
    progress: Progress,
) -> None:
    """`control_cluster`: how the member reaches the control cluster (a kubeconfig's cluster
    entry; `IN_CLUSTER` for the control cluster itself)."""
    cid = cluster_id(member)
    refuse_duplicate(store, name, cid, f"the cluster at {member.server}")
    account = m.member_account(name)
    apply(control, m.member_identity(name), progress)
    token, expires = request_token(control, account)
    progress(
        f"{name}: a token of ServiceAccount {m.NS}/{account}, until {expires or '(no expiry)'}"
    )
    text = member_control_kubeconfig(control_cluster, account, token)
    changed = apply(member, member_objects(name, options, text), progress)
    progress(f"{name}: member components applied ({changed} object(s) changed)")
    # The kube store keeps the kubeconfig in the cluster's Secret, not on the Cluster.
    store.apply_all([cluster_object(name, member_kubeconfig, options, cid)])
    progress(f"Cluster {name} applied ({options.network_type}, {options.ip_family})")


def cluster_id(member: KubeApi) -> str:
    """A Kubernetes cluster's intrinsic ID: the UID of its kube-system Namespace (what
    Submariner and Cilium use) - the same whichever server address or name reaches it."""
    try:
        ns = member.request("GET", "/api/v1/namespaces/kube-system", what="Namespace kube-system")
    except ApiNotFound:
        raise DeployError(f"{member.server}: no kube-system Namespace to identify it by") from None
    uid = ns.get("metadata", {}).get("uid")
    if not isinstance(uid, str) or not uid:
        raise DeployError(f"{member.server}: Namespace kube-system has no metadata.uid")
    return uid


def unjoin(
    store: Store, control: KubeApi, name: str, progress: Progress, timeout: float = 60.0
) -> None:
    try:
        obj = store.get(Cluster, name)
    except NotFound:
        raise DeployError(f"no Cluster {name}") from None
    text = member_kubeconfig_of(store, obj)
    if text is None:
        raise DeployError(f"Cluster {name} carries no Kubernetes kubeconfig")
    member = KubeApi(Target(data=text))
    objects = member_objects(name, KubeLinkOptions(network_type="gateway"), "-")
    workloads = [o for o in objects if o["kind"] == "Deployment"]
    remove(member, m.unique(workloads), progress)  # controller and electors: they would recreate
    pools = remove_calico_pools(member)
    nodes = forget(store, name)
    progress(
        f"{name}: Cluster, {len(nodes)} ClusterNodes and {pools} Calico IPPools deleted; "
        "agents tear down"
    )
    names = {cn.name for cn in nodes}
    wait_until(
        lambda: nodeconfigs_gone(store, names),
        timeout,
        f"{name}: the network-manager to remove its NodeConfigs (is it running? the agents keep "
        "the tunnels until it does)",
        DeployError,
        interval=0.2,
    )
    time.sleep(2.0 if names else 0.0)  # let agents see their NodeConfig go and tear down
    rest = [o for o in objects if o["kind"] not in ("Deployment", "Namespace")]
    remove(member, m.unique(rest), progress)
    remove(control, m.member_identity(name), progress)  # its tokens die with the account
    progress(f"{name}: unjoined")


def uninstall(control: KubeApi, store: Store, progress: Progress, timeout: float = 60.0) -> None:
    for cluster in store.list(Cluster):
        unjoin(store, control, cluster.name, progress, timeout)
    objects = m.control_plane()
    remove(control, [o for o in objects if o["kind"] != "Namespace"], progress)
    with contextlib.suppress(ApiNotFound):
        control.request("DELETE", m.object_path(m.namespace()))
        progress(f"deleted Namespace {C.DEFAULT_NAMESPACE}")


def kube_options(
    options: LinkOptions, image: str = m.DEFAULT_IMAGE, service_cidrs: list[str] | None = None
) -> KubeLinkOptions:
    """The link options plus what only Kubernetes needs (BadInput on a malformed CIDR)."""
    try:
        services = tuple(normalize_cidr(c) for c in service_cidrs or [])
    except ValueError as exc:
        raise BadInput(f"--service-cidr: {exc}") from None
    return KubeLinkOptions(
        options.network_type, options.ip_family, options.cni, options.default_nic, image, services
    )


def dry_run(
    name: str,
    options: KubeLinkOptions,
    control: bool,
    host_kubeconfig: str | None = None,
    show_secrets: bool = False,
) -> list[dict[str, Any]]:
    """The manifests install (`control`) or join would apply, and the Cluster object; no
    cluster is contacted, so the member's token is a placeholder. Secrets' data and the
    Cluster's kubeconfig are `<redacted>` unless `show_secrets`."""
    token = f"(a token of {m.member_account(name)}, by TokenRequest at join)"
    try:
        where = (
            IN_CLUSTER if control or not host_kubeconfig else control_cluster_of(host_kubeconfig)
        )
    except DeployError as exc:
        raise BadInput(str(exc)) from None
    mounted = member_control_kubeconfig(where, m.member_account(name), token)
    objects = m.member_identity(name) + member_objects(name, options, mounted)
    if control:
        objects = m.unique(m.control_plane(options.image) + objects)
    cluster = cluster_object(name, "(the member's kubeconfig, kept in a Secret)", options)
    out = [*objects, cluster.to_dict()]
    return out if show_secrets else redacted(out)


class KubeFederation:
    """`Federation` on Kubernetes. `control`: the control cluster (its kubeconfig and
    context); `member_context`: the context to use in a member's kubeconfig."""

    poll_interval = 1.0

    def __init__(
        self,
        store: Store,
        control: Target,
        *,
        member_context: str | None = None,
        image: str = m.DEFAULT_IMAGE,
        service_cidrs: list[str] | None = None,
    ) -> None:
        self.store, self.control, self.member_context = store, control, member_context
        self.image, self.service_cidrs = image, service_cidrs

    def _options(self, options: LinkOptions) -> KubeLinkOptions:
        return kube_options(options, self.image, self.service_cidrs)

    def pending(self) -> str:
        """Nothing beyond synced nodes: members' controllers keep Calico's IPPools."""
        return ""

    def install(self, member: str, name: str, options: LinkOptions, progress: Progress) -> None:
        opts = self._options(options)
        api = KubeApi(Target(member, self.member_context), field_manager=FIELD_MANAGER)
        install(api, self.store, read_kubeconfig(member, self.member_context), name, opts, progress)

    def join(self, member: str, name: str, options: LinkOptions, progress: Progress) -> None:
        opts = self._options(options)
        api = KubeApi(Target(member, self.member_context), field_manager=FIELD_MANAGER)
        control_file = self.control.kubeconfig or member
        control = KubeApi(Target(control_file, self.control.context), field_manager=FIELD_MANAGER)
        same = api.server == control.server
        where = IN_CLUSTER if same else control_cluster_of(control_file)
        text = read_kubeconfig(member, self.member_context)
        join(api, control, self.store, name, text, where, opts, progress)

    def unjoin(self, name: str, progress: Progress, timeout: float) -> None:
        control = KubeApi(self.control, field_manager=FIELD_MANAGER)
        unjoin(self.store, control, name, progress, timeout)

    def uninstall(self, progress: Progress, timeout: float) -> None:
        api = KubeApi(self.control, field_manager=FIELD_MANAGER)
        uninstall(api, self.store, progress, timeout)
