"""What only the sqlite backend promises: atomic apply_all, clear errors on a bad path."""

from __future__ import annotations

import sqlite3
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


def test_a_write_with_a_timeout_gives_up_on_a_locked_store(tmp_path: Path) -> None:
    """Another process holds the write lock (a stalled store): a bounded write fails after
    its timeout with nothing written, instead of waiting out SQLite's 30 s busy timeout."""
    store = SqliteStore(tmp_path / "s.db")
    first = store.create(Cluster(metadata=ObjectMeta(name="c1")))
    other = sqlite3.connect(tmp_path / "s.db", isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    changed = first.model_copy(deep=True)
    changed.metadata.labels["x"] = "1"
    with pytest.raises(StoreError, match="locked"):
        store.update(changed, timeout=0.2)
    with pytest.raises(StoreError, match="locked"):
        store.create(Cluster(metadata=ObjectMeta(name="c2")), timeout=0.0)
    other.execute("ROLLBACK")
    assert store.get(Cluster, "c1") == first
    assert store.update(changed, timeout=0.0).metadata.labels == {"x": "1"}
    other.close()
