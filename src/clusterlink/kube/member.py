"""The member controller's Kubernetes side: read a member cluster's facts and keep its Calico
IPPools for remote CIDRs. The decisions are the pure adapters of `controllers.discovery`;
this module only fetches their input and writes their output."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from clusterlink.api.cluster import Cluster
from clusterlink.api.net import cidr_sort_key
from clusterlink.controllers import discovery as d
from clusterlink.controllers.member import FactsError, MemberFacts, MemberNode
from clusterlink.kubeclient.api import APPLY_PATCH, KubeApi
from clusterlink.kubeclient.errors import ApiError, ApiNotFound
from clusterlink.store.base import Store, StoreError

log = logging.getLogger("clusterlink.controller")

CALICO = "/apis/crd.projectcalico.org/v1"
FLANNEL_CONFIGMAPS = (("kube-flannel", "kube-flannel-cfg"), ("kube-system", "kube-flannel-cfg"))


def _items(api: KubeApi, path: str, params: dict[str, str] | None = None) -> list[dict[str, Any]]:
    return list(api.request("GET", path, params=params).get("items") or [])


def kube_facts(
    api: KubeApi, cluster: Cluster, service_cidrs_override: list[str] | None = None
) -> MemberFacts:
    """Nodes (without `kosmos.io/exclude=true`), per-node pod CIDRs, cluster pod CIDRs and
    service CIDRs, by the cluster's CNI (Kosmos' adapters)."""
    options = cluster.spec.cluster_link_options
    cni = (options.cni if options else "calico").lower()
    nodes = d.member_nodes(_items(api, "/api/v1/nodes"))
    affinities: list[dict[str, Any]] = []
    if cni == "calico":
        pod_cidrs = d.pod_cidrs_from_calico_pools(_items(api, f"{CALICO}/ippools"))
        affinities = _items(api, f"{CALICO}/blockaffinities")
    elif cni == "flannel":
        pod_cidrs = d.pod_cidrs_from_flannel(_flannel_configmap(api))
    elif cni == "cilium":
        pod_cidrs = d.pod_cidrs_from_cilium(
            api.request("GET", "/api/v1/namespaces/kube-system/configmaps/cilium-config")
        )
    else:
        pod_cidrs = []
    members = []
    for node in nodes:
        name = node["metadata"]["name"]
        cidrs = d.node_cidrs_from_block_affinities(affinities, name) if affinities else []
        members.append(MemberNode(name, tuple(cidrs or d.node_cidrs_from_node(node))))
    if not pod_cidrs:  # other CNIs: the nodes' own ranges
        union = {c for m in members for c in m.pod_cidrs}
        pod_cidrs = sorted(union, key=cidr_sort_key)
    if service_cidrs_override:
        services = sorted(set(service_cidrs_override), key=cidr_sort_key)
    else:
        pods = _items(
            api,
            "/api/v1/namespaces/kube-system/pods",
            {"labelSelector": "component=kube-apiserver"},
        )
        services = d.service_cidrs_from_apiserver(pods)
    return MemberFacts(
        nodes=tuple(sorted(members, key=lambda m: m.name)),
        pod_cidrs=tuple(pod_cidrs),
        service_cidrs=tuple(services),
    )


def _flannel_configmap(api: KubeApi) -> dict[str, Any]:
    for namespace, name in FLANNEL_CONFIGMAPS:
        try:
            return api.request("GET", f"/api/v1/namespaces/{namespace}/configmaps/{name}")
        except ApiNotFound:
            continue
    raise d.DiscoveryError("flannel: no kube-flannel-cfg ConfigMap in kube-flannel or kube-system")


def remove_calico_pools(api: KubeApi) -> int:
    """Unjoin: delete every `clusterlink-*` IPPool the member controller made (none when the
    member runs no Calico). Returns deletions."""
    try:
        pools = _items(api, f"{CALICO}/ippools")
    except ApiNotFound:
        return 0  # no Calico CRDs
    names = [str((p.get("metadata") or {}).get("name", "")) for p in pools]
    ours = [n for n in names if n.startswith(f"{d.OUR_POOL_PREFIX}-")]
    for name in ours:
        with contextlib.suppress(ApiNotFound):
            api.request("DELETE", f"{CALICO}/ippools/{name}")
    return len(ours)


def sync_calico_pools(api: KubeApi, store: Store, cluster: str) -> int:
    """Keep one disabled, non-NAT `clusterlink-*` IPPool per remote pod/service CIDR so Calico
    neither SNATs traffic to other clusters nor allocates from their ranges. Returns writes."""
    remote, local = d.federation_cidrs(store.list(Cluster), cluster)
    existing = _items(api, f"{CALICO}/ippools")
    apply, stale = d.remote_calico_pools(remote, local, existing)
    for pool in apply:
        api.request(
            "PATCH",
            f"{CALICO}/ippools/{pool['metadata']['name']}",
            params={"fieldManager": api.field_manager, "force": "true"},
            body=pool,  # JSON is YAML: the apply content type takes it
            content_type=APPLY_PATCH,
        )
    for name in stale:
        with contextlib.suppress(ApiNotFound):
            api.request("DELETE", f"{CALICO}/ippools/{name}")
    if apply or stale:
        log.info("cluster %s: %d IPPool(s) applied, %d removed", cluster, len(apply), len(stale))
    return len(apply) + len(stale)


class KubeFacts:
    """The member controller's facts port on Kubernetes: the member's facts, and its Calico
    IPPools kept after each sync; every failure is a `FactsError`."""

    def __init__(self, api: KubeApi, store: Store, service_cidrs: list[str] | None = None) -> None:
        self.api, self.store, self.service_cidrs = api, store, service_cidrs

    def facts(self, cluster: Cluster) -> MemberFacts:
        try:
            return kube_facts(self.api, cluster, self.service_cidrs)
        except (ApiError, d.DiscoveryError) as exc:
            raise FactsError(str(exc)) from None

    def after_sync(self, cluster: Cluster) -> int:
        options = cluster.spec.cluster_link_options
        if options is None or options.cni.lower() != "calico":
            return 0
        try:
            return sync_calico_pools(self.api, self.store, cluster.name)
        except (ApiError, StoreError) as exc:
            raise FactsError(f"Calico IPPools: {exc}") from None
