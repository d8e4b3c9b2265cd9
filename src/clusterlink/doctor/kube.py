"""`kosmosctl dr` on Kubernetes: a floater DaemonSet per cluster, driven over HTTP through the
API server's pod proxy (`pods/NAME:PORT/proxy/...`).

No `kubectl exec` and no route from the user's machine to pod or node IPs is needed: whoever
can reach the API server can run the doctor. The floaters themselves probe each other over
the pod (or host) network, which is what is being checked. The DaemonSet is removed at the end.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from clusterlink import constants as C
from clusterlink.controllers.discovery import member_nodes
from clusterlink.doctor.probe import Place
from clusterlink.kube import DeployError
from clusterlink.kube import manifests as m
from clusterlink.kube.deploy import apply, remove
from clusterlink.kubeclient.api import KubeApi
from clusterlink.kubeclient.errors import ApiError

NS = C.DEFAULT_NAMESPACE


@dataclass
class KubeCluster:
    name: str  # how results name it (the kubeconfig's context)
    api: KubeApi


def _ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _ips(pod: dict[str, Any], host_network: bool) -> tuple[str, ...]:
    status = pod.get("status") or {}
    key, single = ("hostIPs", "hostIP") if host_network else ("podIPs", "podIP")
    ips = [i.get("ip") for i in status.get(key) or [] if i.get("ip")]
    if not ips and status.get(single):
        ips = [status[single]]
    return tuple(ips)


@dataclass
class KubeFloaters:
    clusters: list[KubeCluster]
    host_network: bool
    image: str
    port: int
    pods: dict[str, tuple[KubeApi, str]] = field(default_factory=dict)  # label -> (api, pod)

    @property
    def name(self) -> str:
        return m.floater_name(self.host_network)

    def manifests(self) -> list[m.Obj]:
        return m.floater(self.image, self.host_network, self.port)

    def deploy(self) -> None:
        for cluster in self.clusters:
            apply(cluster.api, self.manifests())

    def places(
        self, timeout: float, progress: Callable[[str], None] | None = None
    ) -> tuple[list[Place], list[str]]:
        """Every node's floater once Ready (or at the deadline): places and nodes without one."""
        deadline = time.monotonic() + timeout
        last = ""
        while True:
            found, missing = self._scan()
            if not missing or time.monotonic() >= deadline:
                return found, missing
            note = f"waiting for floaters on {len(missing)} node(s): {', '.join(missing[:5])}"
            if progress and note != last:
                progress(note)
                last = note
            time.sleep(0.5)

    def _scan(self) -> tuple[list[Place], list[str]]:
        found: list[Place] = []
        missing: list[str] = []
        self.pods.clear()
        for cluster in self.clusters:
            nodes = member_nodes(cluster.api.request("GET", "/api/v1/nodes").get("items") or [])
            pods = (
                cluster.api.request(
                    "GET",
                    f"/api/v1/namespaces/{NS}/pods",
                    params={"labelSelector": f"app={self.name}"},
                ).get("items")
                or []
            )
            by_node = {
                (p.get("spec") or {}).get("nodeName"): p
                for p in pods
                if _ready(p) and not p["metadata"].get("deletionTimestamp")
            }
            for node in sorted(n["metadata"]["name"] for n in nodes):
                pod = by_node.get(node)
                label = f"{cluster.name}/{node}"
                ips = _ips(pod, self.host_network) if pod else ()
                if pod is None or not ips:
                    missing.append(label)
                    continue
                found.append(Place(cluster.name, node, pod["metadata"]["name"], ips))
                self.pods[label] = (cluster.api, pod["metadata"]["name"])
        return found, missing

    async def call(
        self, label: str, method: str, url: str, body: Any, timeout: float
    ) -> tuple[int, Any]:
        api, pod = self.pods[label]
        path = f"/api/v1/namespaces/{NS}/pods/{pod}:{self.port}/proxy{url}"
        try:
            answer = await asyncio.to_thread(
                api.request, method, path, body=body, timeout=timeout, what=f"floater {label}"
            )
        except ApiError as exc:
            raise OSError(str(exc)) from None
        return 200, answer

    def cleanup(self) -> list[str]:
        """Remove the DaemonSets (the namespace stays: clusterlink lives there); problems."""
        problems = []
        for cluster in self.clusters:
            try:
                remove(cluster.api, [o for o in self.manifests() if o["kind"] != "Namespace"])
            except DeployError as exc:
                problems.append(f"{cluster.name}: {exc}")
        return problems
