"""Store URLs: `sqlite:///PATH` (the embedded default) and `kube://[?kubeconfig=P&context=C]`."""

from __future__ import annotations

import os
from pathlib import Path

from clusterlink.store.base import Store, StoreError
from clusterlink.store.counting import counted
from clusterlink.store.sqlite import SqliteStore

ENV_STORE = "CLUSTERLINK_STORE"
DEFAULT_STORE_URL = "sqlite:///var/lib/clusterlink/clusterlink.db"


def resolve_url(url: str | None) -> str:
    """The flag, else $CLUSTERLINK_STORE, else the default file."""
    return url or os.environ.get(ENV_STORE) or DEFAULT_STORE_URL


def open_store(url: str | None = None) -> Store:
    url = resolve_url(url)
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise StoreError(f"store URL {url!r}: expected SCHEME://..., e.g. sqlite:///PATH")
    if scheme == "sqlite":
        if not rest:
            raise StoreError(f"store URL {url!r}: no file path")
        path = Path(rest)
        _check_writable(path)
        return counted(SqliteStore(path))
    if scheme == "kube":
        from clusterlink.store.kube import KubeStore, parse_kube_url

        return counted(KubeStore.open(parse_kube_url(rest)))
    raise StoreError(f"store URL {url!r}: unknown scheme {scheme!r} (supported: sqlite, kube)")


def _check_writable(path: Path) -> None:
    target = path if path.exists() else path.parent
    while not target.exists():
        target = target.parent
    if not target.is_dir() and target != path:
        raise StoreError(f"store {path}: {target} is not a directory")
    if not os.access(target, os.W_OK):
        raise StoreError(f"store {path}: not writable ({target} refuses writes)")
    if path.is_dir():
        raise StoreError(f"store {path}: is a directory, expected a file")
