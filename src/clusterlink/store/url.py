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
        if url == DEFAULT_STORE_URL:  # our own default place: made on first use
            _make_default_dir(path.parent)
        check_store_file(path)
        return counted(SqliteStore(path))
    if scheme == "kube":
        from clusterlink.store.kube import KubeStore, parse_kube_url

        return counted(KubeStore.open(parse_kube_url(rest)))
    raise StoreError(f"store URL {url!r}: unknown scheme {scheme!r} (supported: sqlite, kube)")


def _make_default_dir(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"store directory {directory}: cannot create ({exc.strerror})") from None


def check_store_file(path: Path) -> None:
    """A store file must be a regular file (or not exist yet) in a writable directory that
    exists: nothing is created around it, and nothing that would block (a FIFO) is opened."""
    if "\0" in str(path):
        raise StoreError("store: a path with a NUL byte")
    if not path.is_absolute():
        raise StoreError(f"store {path}: expected an absolute path (sqlite:///ABSOLUTE/PATH)")
    parent = path.parent
    if not parent.exists():
        raise StoreError(f"store {path}: directory {parent} does not exist")
    if not parent.is_dir():
        raise StoreError(f"store {path}: {parent} is not a directory")
    if path.is_dir():
        raise StoreError(f"store {path}: is a directory, expected a file")
    if path.exists() and not path.is_file():
        raise StoreError(f"store {path}: not a regular file")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise StoreError(f"store {path}: not writable ({parent} refuses writes)")
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        raise StoreError(f"store {path}: not readable and writable")
