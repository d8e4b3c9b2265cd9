"""Backends the Store contract suite runs against: `sqlite`, and `kube` on the API server double."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from clusterlink.store.base import Store
from clusterlink.store.kube import kube_url
from clusterlink.store.url import open_store
from tests.kubeapi import RunningApiServer


@pytest.fixture(params=["sqlite", "kube"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite://{tmp_path}/store.db"
    elif request.param == "kube":
        with RunningApiServer(tmp_path) as server:
            yield kube_url(str(server.kubeconfig))
    else:
        raise AssertionError(request.param)


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    st = open_store(store_url)
    yield st
    st.close()
