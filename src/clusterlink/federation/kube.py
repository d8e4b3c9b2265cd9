"""The Kubernetes federation: install / join / unjoin / uninstall on real clusters
(`KubeFederation`; the module functions are its steps). Manifests and their server-side apply
are `clusterlink.kube.deploy`; the store is the control cluster's API (`kube://`)."""

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
    KubeLinkOptions,
    apply,
    cluster_object,
    control_kubeconfig_text,
    member_kubeconfig_of,
    member_objects,
    remove,
)
from clusterlink.kube.member import remove_calico_pools
from clusterlink.kubeclient.api import KubeApi, load_config
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
    join(control, store, name, kubeconfig_text, None, options, progress)


def join(
    member: KubeApi,
    store: Store,
    name: str,
    member_kubeconfig: str,
    control_kubeconfig: str | None,
    options: KubeLinkOptions,
    progress: Progress,
) -> None:
    """`control_kubeconfig` None: the member is the control cluster itself."""
    cid = cluster_id(member)
    refuse_duplicate(store, name, cid, f"the cluster at {member.server}")
    same = control_kubeconfig is None
    changed = apply(member, member_objects(name, options, same, control_kubeconfig), progress)
    progress(f"{name}: member components applied ({changed} object(s) changed)")
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


def unjoin(store: Store, name: str, progress: Progress, timeout: float = 60.0) -> None:
    try:
        obj = store.get(Cluster, name)
    except NotFound:
        raise DeployError(f"no Cluster {name}") from None
    text = member_kubeconfig_of(obj)
    if text is None:
        raise DeployError(f"Cluster {name} carries no Kubernetes kubeconfig")
    member = KubeApi(Target(data=text))
    objects = member_objects(name, KubeLinkOptions(), same_cluster=True, control_kubeconfig=None)
    objects += member_objects(name, KubeLinkOptions(), same_cluster=False, control_kubeconfig="-")
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
    progress(f"{name}: unjoined")


def uninstall(control: KubeApi, store: Store, progress: Progress, timeout: float = 60.0) -> None:
    for cluster in store.list(Cluster):
        unjoin(store, cluster.name, progress, timeout)
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
    name: str, options: KubeLinkOptions, control: bool, host_kubeconfig: str | None = None
) -> list[dict[str, Any]]:
    """The manifests install (`control`) or join would apply, and the Cluster object; no
    cluster is contacted."""
    if control:
        objects = m.unique(
            m.control_plane(options.image) + member_objects(name, options, True, None)
        )
        cluster = cluster_object(name, "(the control cluster's kubeconfig)", options)
        return [*objects, cluster.to_dict()]
    try:
        text = host_kubeconfig and control_kubeconfig_text(host_kubeconfig)
    except DeployError as exc:
        raise BadInput(str(exc)) from None
    objects = member_objects(name, options, not text, text or None)
    return [*objects, cluster_object(name, "(the member's kubeconfig)", options).to_dict()]


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
        same = api.server == load_config(Target(control_file)).cluster.server
        control = None if same else control_kubeconfig_text(control_file)
        text = read_kubeconfig(member, self.member_context)
        join(api, self.store, name, text, control, opts, progress)

    def unjoin(self, name: str, progress: Progress, timeout: float) -> None:
        unjoin(self.store, name, progress, timeout)

    def uninstall(self, progress: Progress, timeout: float) -> None:
        api = KubeApi(self.control, field_manager=FIELD_MANAGER)
        uninstall(api, self.store, progress, timeout)
