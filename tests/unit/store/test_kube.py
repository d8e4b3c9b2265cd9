"""What the `kube` backend adds to the contract: 410 Gone, long watches, namespaced Leases."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from clusterlink.api import Cluster, Lease, ObjectMeta
from clusterlink.kubeclient.api import KubeApi
from clusterlink.kubeclient.target import Target
from clusterlink.store.base import Expired
from clusterlink.store.kube import KubeStore
from tests.kubeapi import RunningApiServer


def test_watch_from_a_compacted_revision_is_expired(tmp_path: Path) -> None:
    with RunningApiServer(tmp_path, log_limit=5) as server:
        store = KubeStore(KubeApi(Target(str(server.kubeconfig))))
        start = store.revision()
        for i in range(10):
            store.create(Cluster(metadata=ObjectMeta(name=f"c{i}")))
        with pytest.raises(Expired, match="410 Gone"):
            list(store.watch(Cluster, start, timeout=0.5))
        recent = list(store.watch(Cluster, store.revision() - 3, timeout=0.3))
        assert [e.object.name for e in recent] == ["c7", "c8", "c9"]


def test_watch_resumes_across_server_timeouts_without_loss(tmp_path: Path) -> None:
    """Streams end every second (timeoutSeconds=1); events between them are not lost."""
    with RunningApiServer(tmp_path) as server:
        store = KubeStore(KubeApi(Target(str(server.kubeconfig))), watch_timeout=1.0)
        start = store.revision()
        stop = threading.Event()
        seen: list[str] = []

        def watch() -> None:
            for event in store.watch(Cluster, start, stop=stop):
                seen.append(event.object.name)
                if len(seen) == 30:
                    stop.set()

        t = threading.Thread(target=watch)
        t.start()
        for i in range(30):
            store.create(Cluster(metadata=ObjectMeta(name=f"c{i:02d}")))
            if i % 10 == 9:
                stop.wait(1.2)  # across a stream's end
        t.join(20)
        assert not t.is_alive()
        assert seen == [f"c{i:02d}" for i in range(30)]


def test_leases_live_in_their_namespace(tmp_path: Path) -> None:
    with RunningApiServer(tmp_path) as server:
        store = KubeStore(KubeApi(Target(str(server.kubeconfig))))
        store.create(Lease(metadata=ObjectMeta(name="gw", namespace="kosmos-system")))
        assert [o["metadata"]["namespace"] for o in server.objects("leases")] == ["kosmos-system"]
        assert store.get(Lease, "gw", "kosmos-system").metadata.namespace == "kosmos-system"


def test_leases_are_listed_in_our_namespace_only(tmp_path: Path) -> None:
    """Node heartbeats (kube-node-lease) are Leases too; our Role covers kosmos-system only."""
    with RunningApiServer(tmp_path) as server:
        api = KubeApi(Target(str(server.kubeconfig)))
        api.request(
            "POST",
            "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
            body={"metadata": {"name": "node1"}},
        )
        store = KubeStore(api)
        store.create(Lease(metadata=ObjectMeta(name="gw", namespace="kosmos-system")))
        assert [lease.name for lease in store.list(Lease)] == ["gw"]
