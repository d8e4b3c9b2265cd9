"""`kosmosctl dr` against a Kubernetes API (the double): it places the floater DaemonSet and
drives the floaters over HTTP through the API server's pod proxy. The test plays kubelet: when
the DaemonSet appears it runs real floaters in two namespaces joined by a veth and publishes
their pods (Ready, pod IPs, the proxy socket); a third node never gets a Ready floater."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from clusterlink.kubeclient.api import KubeApi
from clusterlink.kubeclient.target import Target
from tests.conftest import KOSMOSCTL, sh
from tests.kubeapi import PROXY_SOCKET, RunningApiServer

PORT = 18899


def pod(name: str, node: str, ip: str, socket: str, ready: bool = True) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "kosmos-system",
                     "labels": {"app": "clusterlink-floater"},
                     "annotations": {PROXY_SOCKET: socket}},
        "spec": {"nodeName": node, "containers": [{"name": "floater", "image": "x"}]},
        "status": {"podIP": ip, "podIPs": [{"ip": ip}],
                   "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }  # fmt: skip


def test_dr_on_kubernetes_through_the_pod_proxy(
    make_netns: Callable[[str], str], tmp_path: Path
) -> None:
    a, b = make_netns("dra"), make_netns("drb")
    sh(f"ip -n {a} link add eth0 type veth peer name eth0 netns {b}")
    for ns, i in ((a, 1), (b, 2)):
        sh(f"ip -n {ns} link set eth0 up && ip -n {ns} addr add 10.99.0.{i}/24 dev eth0")
    floaters: list[subprocess.Popen[bytes]] = []
    with RunningApiServer(tmp_path) as server:
        api = KubeApi(Target(str(server.kubeconfig)))
        for node in ("n1", "n2", "n3"):
            api.request("POST", "/api/v1/nodes", body={"metadata": {"name": node}})

        def kubelet() -> None:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if any(
                    d["metadata"]["name"] == "clusterlink-floater"
                    for d in server.objects("daemonsets")
                ):
                    break
                time.sleep(0.05)
            for ns, node, ip in ((a, "n1", "10.99.0.1"), (b, "n2", "10.99.0.2")):
                sock = str(tmp_path / f"{node}.sock")
                floaters.append(subprocess.Popen(
                    [sys.executable, "-m", "clusterlink.doctor", "--port", str(PORT), "--netns", ns,
                     "--unix", sock]))  # fmt: skip
                while not Path(sock).exists():
                    time.sleep(0.02)
                publish(pod(f"floater-{node}", node, ip, sock))
            publish(pod("floater-n3", "n3", "10.99.0.3", "/nonexistent", ready=False))

        def publish(obj: dict[str, Any]) -> None:
            """Create the pod, then report its status (as the kubelet does, via /status)."""
            pods = "/api/v1/namespaces/kosmos-system/pods"
            created = api.request("POST", pods, body=obj)
            created["status"] = obj["status"]
            api.request("PUT", f"{pods}/{obj['metadata']['name']}/status", body=created)

        thread = threading.Thread(target=kubelet)
        thread.start()
        try:
            proc = subprocess.run(
                [KOSMOSCTL, "dr", "--src-kubeconfig", str(server.kubeconfig), "--port", str(PORT),
                 "--protocol", "all", "--floater-wait", "3", "--timeout", "1", "-o", "json"],
                capture_output=True, text=True, timeout=120, cwd=tmp_path,
                env={**os.environ, "XDG_STATE_HOME": str(tmp_path)},  # its record of the run
            )  # fmt: skip
        finally:
            thread.join(30)
            for f in floaters:
                f.terminate()
                f.wait(10)
        assert proc.returncode == 1, proc.stderr  # n3 has no Ready floater
        out = json.loads(proc.stdout)
        results = {(r["src"], r["target"], r["protocol"]): r["ok"] for r in out["results"]}
        assert results == {
            (f"double/{s}", t, p): True
            for s in ("n1", "n2")
            for t in ("10.99.0.1", "10.99.0.2")
            for p in ("icmp", "tcp")
        }
        assert out["summary"]["nodesWithoutFloater"] == ["double/n3"]
        assert "Traceback" not in proc.stderr
        # The DaemonSet is gone again; the doctor left nothing behind.
        assert not [d for d in server.objects("daemonsets")]
