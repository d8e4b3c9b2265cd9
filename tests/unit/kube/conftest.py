"""The Kubernetes API server double (tests/kubeapi.py), one per test, and clients of it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from clusterlink.kubeclient.api import KubeApi
from clusterlink.kubeclient.target import Target
from clusterlink.store.kube import KubeStore
from tests.kubeapi import RunningApiServer


@pytest.fixture
def apiserver(tmp_path: Path) -> Iterator[RunningApiServer]:
    with RunningApiServer(tmp_path) as server:
        yield server


@pytest.fixture
def api(apiserver: RunningApiServer) -> Iterator[KubeApi]:
    client = KubeApi(Target(str(apiserver.kubeconfig)), retries=3)
    yield client
    client.close()


@pytest.fixture
def kstore(api: KubeApi) -> KubeStore:
    return KubeStore(api)
