"""What only the sqlite backend promises: atomic apply_all, clear errors on a bad path."""

from __future__ import annotations

from pathlib import Path

import pytest

from clusterlink.api import Cluster, ObjectMeta
from clusterlink.store.base import NotFound, StoreError
from clusterlink.store.sqlite import SqliteStore
from clusterlink.store.url import open_store


def test_apply_all_rolls_back_on_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    st = SqliteStore(tmp_path / "s.db")
    st.create(Cluster(metadata=ObjectMeta(name="keep")))
    rev = st.revision()
    real_create = SqliteStore._create

    def failing_create(self: SqliteStore, db: object, obj: Cluster) -> Cluster:
        if obj.name == "boom":
            raise StoreError("disk on fire")
        return real_create(self, db, obj)

    monkeypatch.setattr(SqliteStore, "_create", failing_create)
    with pytest.raises(StoreError, match="disk on fire"):
        st.apply_all(
            [Cluster(metadata=ObjectMeta(name="first")), Cluster(metadata=ObjectMeta(name="boom"))]
        )
    assert st.revision() == rev
    with pytest.raises(NotFound):
        st.get(Cluster, "first")


@pytest.mark.parametrize(
    "url, needle",
    [
        ("sqlite:///proc/nope/x.db", "directory /proc/nope does not exist"),
        ("sqlite:///etc/hostname/x.db", "is not a directory"),
        ("postgres://x", "unknown scheme"),
        ("just-a-path", "expected SCHEME://"),
        ("sqlite://", "no file path"),
    ],
)
def test_bad_store_urls(url: str, needle: str) -> None:
    with pytest.raises(StoreError, match=needle):
        open_store(url)


def test_directory_is_not_a_store(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="is a directory"):
        open_store(f"sqlite://{tmp_path}")


def test_env_var_selects_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLUSTERLINK_STORE", f"sqlite://{tmp_path}/env.db")
    st = open_store(None)
    st.create(Cluster(metadata=ObjectMeta(name="c")))
    assert (tmp_path / "env.db").exists()
    st.close()
