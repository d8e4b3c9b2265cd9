"""The control-plane store: the `Store` port and its backends."""

from clusterlink.store.base import (
    AlreadyExists,
    Conflict,
    Expired,
    NotFound,
    ResourceList,
    Store,
    StoreError,
    WatchEvent,
)
from clusterlink.store.url import open_store

__all__ = [
    "AlreadyExists",
    "Conflict",
    "Expired",
    "NotFound",
    "ResourceList",
    "Store",
    "StoreError",
    "WatchEvent",
    "open_store",
]
