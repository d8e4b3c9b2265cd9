"""The member controller on Kubernetes, against the API server double holding real object
shapes: Nodes -> ClusterNodes, CIDR discovery per CNI, Calico IPPools for remote CIDRs."""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import time
from typing import Any

from clusterlink.api import Cluster, ClusterNode, ObjectMeta
from clusterlink.api.cluster import (
    ClusterLinkOptions,
    ClusterLinkStatus,
    ClusterSpec,
    ClusterStatus,
)
from clusterlink.controllers.member import MemberController
from clusterlink.kube.member import KubeFacts, remove_calico_pools
from clusterlink.kubeclient.api import KubeApi
from clusterlink.store.kube import KubeStore, kube_url
from tests.conftest import CLUSTERLINK
from tests.kubeapi import RunningApiServer
from tests.unit.controllers.test_discovery import AFFINITIES, APISERVER, FLANNEL, IPPOOLS

CALICO = "/apis/crd.projectcalico.org/v1"


def node(name: str, pod_cidrs: list[str] | None = None, **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **labels}},
        "spec": {"podCIDRs": pod_cidrs or []},
    }


def seed(api: KubeApi, cni: str = "calico") -> None:
    api.request("POST", "/api/v1/nodes", body=node("node1", ["10.244.1.0/24"]))
    api.request("POST", "/api/v1/nodes", body=node("node2", ["10.244.2.0/24"]))
    api.request("POST", "/api/v1/nodes", body=node("node3", **{"kosmos.io/exclude": "true"}))
    api.request("POST", "/api/v1/namespaces/kube-system/pods", body=APISERVER)
    if cni == "calico":
        for pool in IPPOOLS:
            api.request("POST", f"{CALICO}/ippools", body=pool)
        for affinity in AFFINITIES:
            api.request("POST", f"{CALICO}/blockaffinities", body=affinity)
    elif cni == "flannel":
        api.request("POST", "/api/v1/namespaces/kube-flannel/configmaps", body=FLANNEL)


def cluster(name: str, cni: str = "calico", **cidrs: list[str]) -> Cluster:
    spec = ClusterSpec(cluster_link_options=ClusterLinkOptions(cni=cni))
    if not cidrs:
        return Cluster(metadata=ObjectMeta(name=name), spec=spec)
    status = ClusterStatus(cluster_link_status=ClusterLinkStatus.model_validate(cidrs))
    return Cluster(metadata=ObjectMeta(name=name), spec=spec, status=status)


def controller(api: KubeApi, store: KubeStore, name: str) -> MemberController:
    return MemberController(store, name, KubeFacts(api, store))


def test_calico_member_nodes_cidrs_and_pools(api: KubeApi, kstore: KubeStore) -> None:
    seed(api)
    kstore.apply_all(
        [cluster("c1"), cluster("c2", podCIDRs=["10.234.0.0/18"], serviceCIDRs=["10.235.0.0/18"])]
    )
    worker = controller(api, kstore, "c1")
    assert worker.step() > 0
    nodes = {cn.name: cn.spec for cn in kstore.list(ClusterNode)}
    assert sorted(nodes) == ["c1-node1", "c1-node2"]  # node3 is excluded
    assert nodes["c1-node1"].pod_cidrs == ["10.233.70.0/26"]  # the confirmed block only
    status = kstore.get(Cluster, "c1").status.cluster_link_status
    assert status.pod_cidrs == ["10.233.64.0/18", "fd11:233::/48"]
    assert status.service_cidrs == ["10.233.0.0/18", "2409:8c2f:3800:11::a18:0/114"]
    pools = {
        p["metadata"]["name"]: p["spec"] for p in api.request("GET", f"{CALICO}/ippools")["items"]
    }
    ours = {n: s for n, s in pools.items() if n.startswith("clusterlink-")}
    assert ours == {
        "clusterlink-c2-10-234-0-0-18": {"cidr": "10.234.0.0/18", "disabled": True, "natOutgoing": False,
                                         "ipipMode": "Never", "vxlanMode": "Never"},
        "clusterlink-c2-10-235-0-0-18": {"cidr": "10.235.0.0/18", "disabled": True, "natOutgoing": False,
                                         "ipipMode": "Never", "vxlanMode": "Never"},
    }  # fmt: skip
    assert "default-ipv4-ippool" in pools  # Calico's own pools are never touched
    assert worker.step() == 0  # nothing changed: nothing written

    api.request("DELETE", "/api/v1/nodes/node2")
    kstore.delete(Cluster, "c2")
    assert worker.step() > 0
    assert [cn.name for cn in kstore.list(ClusterNode)] == ["c1-node1"]
    left = [p["metadata"]["name"] for p in api.request("GET", f"{CALICO}/ippools")["items"]]
    assert not [n for n in left if n.startswith("clusterlink-")]


def test_unjoin_removes_our_pools_and_only_ours(api: KubeApi, kstore: KubeStore) -> None:
    seed(api)
    kstore.apply_all([cluster("c1"), cluster("c2", podCIDRs=["10.234.0.0/18"])])
    controller(api, kstore, "c1").step()
    names = [p["metadata"]["name"] for p in api.request("GET", f"{CALICO}/ippools")["items"]]
    ours = [n for n in names if n.startswith("clusterlink-")]
    assert ours
    assert remove_calico_pools(api) == len(ours)
    left = [p["metadata"]["name"] for p in api.request("GET", f"{CALICO}/ippools")["items"]]
    assert sorted(left) == sorted(set(names) - set(ours))  # Calico's own pools stay
    assert remove_calico_pools(api) == 0


def test_flannel_member_uses_node_pod_cidrs_and_a_service_override(
    api: KubeApi, kstore: KubeStore
) -> None:
    seed(api, "flannel")
    kstore.create(cluster("f1", cni="flannel"))
    worker = MemberController(kstore, "f1", KubeFacts(api, kstore, ["10.96.0.0/12"]))
    worker.step()
    nodes = {cn.name: cn.spec.pod_cidrs for cn in kstore.list(ClusterNode)}
    assert nodes == {"f1-node1": ["10.244.1.0/24"], "f1-node2": ["10.244.2.0/24"]}
    status = kstore.get(Cluster, "f1").status.cluster_link_status
    assert status.pod_cidrs == ["10.244.0.0/16", "fd00:10:244::/56"]
    assert status.service_cidrs == ["10.96.0.0/12"]


def test_broken_member_objects_are_logged_not_fatal(api: KubeApi, kstore: KubeStore) -> None:
    seed(api, "none")
    broken = copy.deepcopy(FLANNEL)
    broken["data"]["net-conf.json"] = "{not json"
    api.request("POST", "/api/v1/namespaces/kube-flannel/configmaps", body=broken)
    kstore.create(cluster("f1", cni="flannel"))
    assert MemberController(kstore, "f1", KubeFacts(api, kstore)).step() == 0
    assert kstore.list(ClusterNode) == []


def test_the_controller_command_on_kubernetes(
    apiserver: RunningApiServer, api: KubeApi, kstore: KubeStore
) -> None:
    seed(api)
    kstore.create(cluster("c1"))
    config = str(apiserver.kubeconfig)
    proc = subprocess.Popen(
        [CLUSTERLINK, "controller", "--cluster", "c1", "--kubeconfig", config,
         "--store", kube_url(config), "--period", "0.2"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while len(kstore.list(ClusterNode)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [cn.name for cn in kstore.list(ClusterNode)] == ["c1-node1", "c1-node2"]
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    assert "Traceback" not in err
