"""Member discovery on Kubernetes: pod and service CIDRs from the objects a cluster already has.

Pure functions over decoded Kubernetes objects (dicts as the API returns them), one per source,
chosen by `Cluster.spec.clusterLinkOptions.cni` (Kosmos' adapters, reference §6):
- service CIDRs: the kube-apiserver Pod's `--service-cluster-ip-range` (or an override, for
  managed clusters without a visible apiserver Pod);
- cluster pod CIDRs: Calico IPPools (except ours, `clusterlink-*`), flannel's `kube-flannel-cfg`
  `net-conf.json`, or `cilium-config`;
- per-node pod CIDRs: Calico BlockAffinities (confirmed, for that node) or `node.spec.podCIDRs`;
- Calico: the disabled, non-NAT `clusterlink-*` IPPools that keep remote pod source IPs intact.
Malformed input raises DiscoveryError naming the object and field.
"""

from __future__ import annotations

import json
import re
from typing import Any

from clusterlink.api.cluster import Cluster
from clusterlink.api.net import cidr_sort_key, cidrs_overlap, normalize_cidr
from clusterlink.planner.exports import to_global

OUR_POOL_PREFIX = "clusterlink"
EXCLUDE_LABEL = "kosmos.io/exclude"


class DiscoveryError(ValueError):
    pass


def _name(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{obj.get('kind', '?')}/{ns + '/' if ns else ''}{meta.get('name', '?')}"


def _cidrs(values: list[str], where: str) -> list[str]:
    try:
        return sorted({normalize_cidr(v) for v in values if v}, key=cidr_sort_key)
    except ValueError as exc:
        raise DiscoveryError(f"{where}: {exc}") from None


def service_cidrs_from_apiserver(pods: list[dict[str, Any]]) -> list[str]:
    """From the first `kube-apiserver*` Pod: `--service-cluster-ip-range=a,b` in its command or
    args (Kosmos reads the first such Pod in kube-system)."""
    for pod in pods:
        if not (pod.get("metadata") or {}).get("name", "").startswith("kube-apiserver"):
            continue
        for container in (pod.get("spec") or {}).get("containers") or []:
            tokens = list(container.get("command") or []) + list(container.get("args") or [])
            for i, token in enumerate(tokens):
                if token.startswith("--service-cluster-ip-range="):
                    value = token.split("=", 1)[1]
                elif token == "--service-cluster-ip-range" and i + 1 < len(tokens):
                    value = tokens[i + 1]
                else:
                    continue
                return _cidrs(value.split(","), f"{_name(pod)}: --service-cluster-ip-range")
    return []


def pod_cidrs_from_calico_pools(pools: list[dict[str, Any]]) -> list[str]:
    """Every Calico IPPool's spec.cidr, except the pools clusterlink made for remote CIDRs."""
    out = []
    for pool in pools:
        name = (pool.get("metadata") or {}).get("name", "")
        if name.startswith(OUR_POOL_PREFIX):
            continue
        cidr = (pool.get("spec") or {}).get("cidr")
        if not cidr:
            raise DiscoveryError(f"{_name(pool)}: spec.cidr missing")
        out.append(cidr)
    return _cidrs(out, "IPPools")


def node_cidrs_from_block_affinities(affinities: list[dict[str, Any]], node: str) -> list[str]:
    """The node's confirmed Calico blocks (BlockAffinity spec.node, spec.state, spec.cidr)."""
    out = []
    for aff in affinities:
        spec = aff.get("spec") or {}
        if spec.get("node") != node or spec.get("state", "confirmed") != "confirmed":
            continue
        if spec.get("deleted") in (True, "true"):
            continue
        if not spec.get("cidr"):
            raise DiscoveryError(f"{_name(aff)}: spec.cidr missing")
        out.append(spec["cidr"])
    return _cidrs(out, f"BlockAffinities of {node}")


def node_cidrs_from_node(node: dict[str, Any]) -> list[str]:
    """`node.spec.podCIDRs` (or the older single `podCIDR`)."""
    spec = node.get("spec") or {}
    values = list(spec.get("podCIDRs") or ([spec["podCIDR"]] if spec.get("podCIDR") else []))
    return _cidrs(values, f"{_name(node)}: spec.podCIDRs")


def pod_cidrs_from_flannel(configmap: dict[str, Any]) -> list[str]:
    """`kube-flannel-cfg` data `net-conf.json`: Network (and IPv6Network)."""
    raw = (configmap.get("data") or {}).get("net-conf.json")
    if raw is None:
        raise DiscoveryError(f"{_name(configmap)}: data.net-conf.json missing")
    try:
        conf = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise DiscoveryError(f"{_name(configmap)}: net-conf.json is not JSON: {exc.msg}") from None
    values = [conf.get("Network", ""), conf.get("IPv6Network", "")]
    if not any(values):
        raise DiscoveryError(f"{_name(configmap)}: net-conf.json has no Network")
    return _cidrs(values, f"{_name(configmap)}: net-conf.json")


def pod_cidrs_from_cilium(configmap: dict[str, Any]) -> list[str]:
    """`cilium-config` keys cluster-pool-ipv4-cidr / cluster-pool-ipv6-cidr (space-separated)."""
    data = configmap.get("data") or {}
    values = []
    for key in ("cluster-pool-ipv4-cidr", "cluster-pool-ipv6-cidr"):
        values += str(data.get(key, "")).split()
    if not values:
        raise DiscoveryError(
            f"{_name(configmap)}: no cluster-pool-ipv4-cidr or cluster-pool-ipv6-cidr"
        )
    return _cidrs(values, _name(configmap))


def member_nodes(nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Nodes that get a ClusterNode: not labelled `kosmos.io/exclude=true` (Kosmos' rule)."""
    return [
        n
        for n in nodes
        if ((n.get("metadata") or {}).get("labels") or {}).get(EXCLUDE_LABEL) != "true"
    ]


def _pool_name(cluster: str, cidr: str) -> str:
    return f"{OUR_POOL_PREFIX}-{cluster}-" + re.sub(r"[^0-9a-f]+", "-", cidr.lower()).strip("-")


def federation_cidrs(clusters: list[Cluster], name: str) -> tuple[dict[str, list[str]], list[str]]:
    """({other cluster: the pod and service CIDRs it is reached at}, this cluster's own). A
    remote CIDR is the one it is advertised as: its global CIDR when its cluster maps it."""
    remote: dict[str, list[str]] = {}
    local: list[str] = []
    for other in clusters:
        status = other.status.cluster_link_status
        cidrs = list(status.pod_cidrs) + list(status.service_cidrs)
        if other.name == name:
            local = cidrs
            continue
        link = other.link
        global_map = link.global_cidrs_map if link is not None else {}
        remote[other.name] = [to_global(global_map, c) for c in cidrs]
    return remote, local


def remote_calico_pools(
    remote: dict[str, list[str]], local_cidrs: list[str], existing: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[str]]:
    """Pools to apply and pool names to delete so that Calico neither NATs traffic to remote
    pod CIDRs nor allocates from them: one disabled, non-NAT `clusterlink-*` IPPool per remote
    CIDR ({cluster: CIDRs}), skipping CIDRs that overlap the local ones (as Kosmos)."""
    want: dict[str, dict[str, Any]] = {}
    for cluster, cidrs in sorted(remote.items()):
        for cidr in _cidrs(cidrs, f"remote CIDRs of {cluster}"):
            if any(cidrs_overlap(cidr, local) for local in local_cidrs):
                continue
            name = _pool_name(cluster, cidr)
            want[name] = {
                "apiVersion": "crd.projectcalico.org/v1",
                "kind": "IPPool",
                "metadata": {"name": name, "labels": {"kosmos.io/cluster": cluster}},
                "spec": {
                    "cidr": cidr,
                    "disabled": True,
                    "natOutgoing": False,
                    "ipipMode": "Never",
                    "vxlanMode": "Never",
                },
            }
    ours = [(p.get("metadata") or {}).get("name", "") for p in existing]
    stale = sorted(n for n in ours if n.startswith(f"{OUR_POOL_PREFIX}-") and n not in want)
    current = {(p.get("metadata") or {}).get("name"): p.get("spec") for p in existing}
    apply = [p for name, p in sorted(want.items()) if current.get(name) != p["spec"]]
    return apply, stale
