"""Backends the Store contract suite runs against. The `kube` backend joins this list later."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from clusterlink.store.base import Store
from clusterlink.store.url import open_store


@pytest.fixture(params=["sqlite"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite://{tmp_path}/store.db"
    raise AssertionError(request.param)


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    st = open_store(store_url)
    yield st
    st.close()
