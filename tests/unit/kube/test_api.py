"""The API connection: kubeconfigs, its errors and how the store maps them, retries on 429/5xx."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from clusterlink.api import Cluster, ObjectMeta
from clusterlink.kubeclient.api import KubeApi
from clusterlink.kubeclient.errors import ApiError, KubeconfigError, status_error
from clusterlink.kubeclient.target import Target
from clusterlink.store.base import AlreadyExists, Conflict, Expired, NotFound, StoreError
from clusterlink.store.kube import KubeStore, kube_url, parse_kube_url, store_error
from clusterlink.store.url import open_store
from tests.kubeapi import RunningApiServer, kubeconfig_for


def test_kubeconfig_problems_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(KubeconfigError, match="no such file"):
        KubeApi(Target(str(tmp_path / "missing")))
    bad = tmp_path / "bad"
    bad.write_text("clusters: [")
    with pytest.raises(KubeconfigError, match="kubeconfig"):
        KubeApi(Target(str(bad)))
    good = tmp_path / "good"
    good.write_text(yaml.safe_dump(kubeconfig_for("http://127.0.0.1:1")))
    with pytest.raises(KubeconfigError, match="Context 'nope' not found"):
        KubeApi(Target(str(good), context="nope"))
    assert KubeApi(Target(str(good), context="double")).server == "http://127.0.0.1:1"
    assert KubeApi(Target(data=good.read_text())).server == "http://127.0.0.1:1"


def test_store_urls() -> None:
    assert parse_kube_url("") == Target()
    assert parse_kube_url("?kubeconfig=/k&context=c") == Target("/k", "c")
    assert kube_url("/k", "c") == "kube://?kubeconfig=/k&context=c"
    with pytest.raises(StoreError, match="unknown parameter"):
        parse_kube_url("?kubecfg=/k")
    with pytest.raises(StoreError, match="expected kube://"):
        open_store("kube://somehost/x")


def test_status_codes_map_to_store_errors() -> None:
    def mapped(code: int, status: dict[str, str]) -> StoreError:
        return store_error(status_error(code, status, "x"))

    assert isinstance(mapped(404, {}), NotFound)
    assert isinstance(mapped(409, {"reason": "AlreadyExists"}), AlreadyExists)
    assert isinstance(mapped(409, {"reason": "Conflict"}), Conflict)
    assert isinstance(mapped(410, {}), Expired)
    denied = status_error(403, {"message": "forbidden: User cannot list"}, "list clusters")
    assert isinstance(denied, ApiError) and denied.code == 403
    assert "forbidden" in str(denied) and "RBAC" in str(denied)
    assert type(store_error(denied)) is StoreError


def test_retries_429_and_5xx_then_succeeds(apiserver: RunningApiServer, api: KubeApi) -> None:
    store = KubeStore(api)
    store.create(Cluster(metadata=ObjectMeta(name="c1")))
    path = "/apis/kosmos.io/v1alpha1/clusters"
    apiserver.server.faults.extend([("GET", path, 429), ("GET", path, 503), ("GET", path, 500)])
    assert store.get(Cluster, "c1").name == "c1"
    assert apiserver.server.faults == []


def test_gives_up_after_its_retries(apiserver: RunningApiServer) -> None:
    api = KubeApi(Target(str(apiserver.kubeconfig)), retries=1)
    path = "/apis/kosmos.io/v1alpha1/clusters"
    apiserver.server.faults.extend([("GET", path, 503)] * 3)
    with pytest.raises(StoreError, match="HTTP 503"):
        KubeStore(api).list(Cluster)


def test_client_errors_are_not_retried(apiserver: RunningApiServer, api: KubeApi) -> None:
    path = "/apis/kosmos.io/v1alpha1/clusters"
    apiserver.server.faults.extend([("GET", path, 403), ("GET", path, 403)])
    with pytest.raises(StoreError, match="HTTP 403"):
        KubeStore(api).list(Cluster)
    assert len(apiserver.server.faults) == 1  # one answer consumed: no retry


def test_unreachable_server_is_one_clear_error(tmp_path: Path) -> None:
    config = tmp_path / "k"
    config.write_text(yaml.safe_dump(kubeconfig_for("http://127.0.0.1:9")))
    api = KubeApi(Target(str(config)), retries=1)
    started = time.monotonic()
    with pytest.raises(StoreError, match=r"Kubernetes API http://127\.0\.0\.1:9: ConnectError"):
        KubeStore(api).list(Cluster)
    assert time.monotonic() - started < 5
