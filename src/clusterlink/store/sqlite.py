"""The embedded `sqlite` backend: one file, many processes (in any network namespace).

Every write runs in one `BEGIN IMMEDIATE` transaction that bumps a global revision counter,
rewrites the object and appends to a change log; the revision is the object's resourceVersion,
so revisions strictly increase across kinds. Watchers read the change log when what they
watch changed: each watcher waits on a doorbell of its own, a FIFO in
`<db>.watch/<Kind>/all/` (or `<Kind>/key-<key>/` when it watches one object), and after each
commit the writer rings the doorbells of the kinds and keys it wrote (one byte each; a FIFO
without a reader is a dead watcher's, and is removed). So a write wakes only its own
watchers: a lab's ~30 lease renewals a second wake nobody, where inotify on the database's
files woke every watcher in every process for every commit (and a host has only 128 inotify
instances per user, so in a large lab most watchers polled). A slow timer (`SAFETY_NET`, 10 s)
covers a lost ring (a writer that died between commit and ring), and then looks only cheaply at first
(`PRAGMA data_version` changes only when another connection commits; the `kinds` table, kept
by a trigger on the change log, holds each kind's last revision). Watchers replay from any revision the log still holds. Without
inotify (no watch descriptors left) they poll every `poll_interval`. WAL mode lets readers run
beside the single writer. A watcher whose `stop` is a `store.stop.Stop` is woken by it (its
doorbell rung); with a plain Event it sees the stop within `SAFETY_NET`.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import os
import sqlite3
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, cast

from clusterlink import constants as C
from clusterlink.api.meta import Resource, now_rfc3339
from clusterlink.store.base import (
    AlreadyExists,
    Conflict,
    EventType,
    Expired,
    NotFound,
    R,
    ResourceList,
    StoreError,
    WatchEvent,
    selector_matches,
)
from clusterlink.store.doorbell import Doorbell, ring_all
from clusterlink.store.stop import woken_by

_SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    kind TEXT NOT NULL, key TEXT NOT NULL, rv INTEGER NOT NULL, data TEXT NOT NULL,
    PRIMARY KEY (kind, key)
);
CREATE TABLE IF NOT EXISTS changes (
    rv INTEGER PRIMARY KEY, kind TEXT NOT NULL, key TEXT NOT NULL, type TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS changes_by_kind ON changes (kind, rv);
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS kinds (kind TEXT PRIMARY KEY, rv INTEGER NOT NULL);
CREATE TRIGGER IF NOT EXISTS kinds_rv AFTER INSERT ON changes BEGIN
    INSERT INTO kinds (kind, rv) VALUES (NEW.kind, NEW.rv)
    ON CONFLICT (kind) DO UPDATE SET rv = excluded.rv;
END;
INSERT OR IGNORE INTO meta (k, v) VALUES ('revision', 0), ('compacted', 0);
"""

ENV_WATCH_POLL = "CLUSTERLINK_WATCH_POLL"
SAFETY_NET = 10.0  # seconds a watcher sleeps at most when no doorbell rang (a `Stop` wakes it)
DEFAULT_KEEP_CHANGES = 200_000  # change-log entries kept for watchers that fall behind
_COMPACT_EVERY = 1_000
_BUSY_TIMEOUT_MS = 30_000  # how long a write waits for another process's by default


def _gone(kind: str, key: str, resource_version: str) -> str:
    return f"{kind} {key}: resourceVersion {resource_version} given, but the object does not exist"


def _key(cls: type[Resource], name: str, namespace: str | None) -> str:
    return f"{namespace}/{name}" if cls.NAMESPACED and namespace else name


class SqliteStore:
    """`Store` on one SQLite file. Thread-safe; open one per process."""

    def __init__(
        self,
        path: str | Path,
        *,
        poll_interval: float | None = None,
        keep_changes: int = DEFAULT_KEEP_CHANGES,
    ) -> None:
        self.path = Path(path)
        # How often a watcher looks for news: 5 ms by default; many processes on one host
        # (a large lab) set CLUSTERLINK_WATCH_POLL higher.
        self.poll_interval = (
            poll_interval
            if poll_interval is not None
            else float(os.environ.get(ENV_WATCH_POLL, "0.005"))
        )
        self.keep_changes = keep_changes
        self._lock = threading.RLock()
        self._writes = 0
        self._written: set[tuple[str, str]] = set()  # (kind, key)s the open transaction wrote
        self.doorbells = self.path.with_name(f"{self.path.name}.watch")
        if not self.path.parent.is_dir():  # never made up: a typo must not create directories
            raise StoreError(f"store {self.path}: directory {self.path.parent} does not exist")
        if self.path.exists() and not self.path.is_file():
            raise StoreError(f"store {self.path}: not a regular file")
        try:
            self._db = self._connect()
            with self._lock:
                self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"store {self.path}: cannot open: {exc}") from None

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
        return db

    # -- transactions -----------------------------------------------------------------------

    @contextlib.contextmanager
    def _write(self, timeout: float | None = None) -> Iterator[sqlite3.Connection]:
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._lock.acquire(timeout=-1 if timeout is None else max(0.0, timeout)):
            raise StoreError(f"store {self.path}: cannot write: busy for {timeout:.2f} s")
        try:
            db = self._db
            self._begin(db, deadline)
            self._written.clear()
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            try:
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                db.execute("ROLLBACK")
                raise StoreError(f"store {self.path}: cannot commit: {exc}") from None
            self._notify(self._written)
            self._writes += 1
            if self._writes % _COMPACT_EVERY == 0:
                self._compact()
        finally:
            self._lock.release()

    def _begin(self, db: sqlite3.Connection, deadline: float | None) -> None:
        """Take the write lock: waiting up to the busy timeout, or (a deadline) trying every
        10 ms without SQLite's busy handler, whose sleeps grow to 100 ms - a lease holder
        waiting on a stalled store gets the lock within 10 ms of its release."""
        if deadline is None:
            try:
                db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StoreError(f"store {self.path}: cannot write: {exc}") from None
            return
        db.execute("PRAGMA busy_timeout=0")
        try:
            while True:
                try:
                    db.execute("BEGIN IMMEDIATE")
                    return
                except sqlite3.OperationalError as exc:
                    left = deadline - time.monotonic()
                    if ("locked" not in str(exc) and "busy" not in str(exc)) or left <= 0:
                        raise StoreError(f"store {self.path}: cannot write: {exc}") from None
                    time.sleep(min(0.01, left))
        finally:
            db.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")

    def _doorbell_dir(self, kind: str, key: str | None) -> Path:
        where = "all" if key is None else "key-" + urllib.parse.quote(key, safe="")
        return self.doorbells / kind / where

    def _notify(self, written: set[tuple[str, str]]) -> None:
        """Wake the watchers of what was just committed (a kind or key nobody watches has
        no doorbells, and costs one failed listdir)."""
        for kind in {k for k, _ in written}:
            ring_all(self._doorbell_dir(kind, None))
        for kind, key in written:
            ring_all(self._doorbell_dir(kind, key))

    def _next_revision(self, db: sqlite3.Connection) -> int:
        db.execute("UPDATE meta SET v = v + 1 WHERE k = 'revision'")
        return int(db.execute("SELECT v FROM meta WHERE k = 'revision'").fetchone()[0])

    def _compact(self) -> None:
        with self._lock:
            rev = self.revision()
            floor = rev - self.keep_changes
            if floor <= 0:
                return
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("DELETE FROM changes WHERE rv <= ?", (floor,))
            self._db.execute("UPDATE meta SET v = max(v, ?) WHERE k = 'compacted'", (floor,))
            self._db.execute("COMMIT")

    def _load(self, db: sqlite3.Connection, kind: str, key: str) -> dict[str, Any] | None:
        row = db.execute(
            "SELECT data FROM objects WHERE kind = ? AND key = ?", (kind, key)
        ).fetchone()
        return cast(dict[str, Any], json.loads(row[0])) if row else None

    def _record(
        self, db: sqlite3.Connection, kind: str, key: str, etype: EventType, data: dict[str, Any]
    ) -> int:
        rv = self._next_revision(db)
        data["metadata"]["resourceVersion"] = str(rv)
        text = json.dumps(data, separators=(",", ":"), sort_keys=True)
        self._put(db, kind, key, rv, etype, text)
        return rv

    def _put(
        self, db: sqlite3.Connection, kind: str, key: str, rv: int, etype: EventType, text: str
    ) -> None:
        """Store revision `rv` of an object (its JSON `text`) and log the change."""
        if etype == "DELETED":
            db.execute("DELETE FROM objects WHERE kind = ? AND key = ?", (kind, key))
        else:
            db.execute(
                "INSERT INTO objects (kind, key, rv, data) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (kind, key) DO UPDATE SET rv = excluded.rv, data = excluded.data",
                (kind, key, rv, text),
            )
        db.execute(
            "INSERT INTO changes (rv, kind, key, type, data) VALUES (?, ?, ?, ?, ?)",
            (rv, kind, key, etype, text),
        )
        self._written.add((kind, key))

    # -- Store ------------------------------------------------------------------------------

    def create(self, obj: R, *, timeout: float | None = None) -> R:
        with self._write(timeout) as db:
            return self._create(db, obj)

    def _create(self, db: sqlite3.Connection, obj: R) -> R:
        cls = type(obj)
        if self._load(db, cls.KIND, obj.key) is not None:
            raise AlreadyExists(f"{cls.KIND} {obj.key} already exists")
        data = obj.to_dict()
        if cls.HAS_STATUS:
            data = cls.model_validate({**data, "status": {}}).to_dict()  # as an API server does
        meta = data["metadata"]
        meta.update(uid=str(uuid.uuid4()), generation=1, creationTimestamp=now_rfc3339())
        meta.pop("deletionTimestamp", None)
        self._record(db, cls.KIND, obj.key, "ADDED", data)
        return cls.model_validate(data)

    def get(self, cls: type[R], name: str, namespace: str | None = None) -> R:
        with self._lock:
            data = self._load(self._db, cls.KIND, _key(cls, name, namespace))
        if data is None:
            raise NotFound(f"{cls.KIND} {name} not found")
        return cls.model_validate(data)

    def list(self, cls: type[R], labels: dict[str, str] | None = None) -> ResourceList[R]:
        with self._lock:
            db = self._db
            db.execute("BEGIN")
            try:
                rows = db.execute(
                    "SELECT data FROM objects WHERE kind = ? ORDER BY key", (cls.KIND,)
                ).fetchall()
                rev = int(db.execute("SELECT v FROM meta WHERE k = 'revision'").fetchone()[0])
            finally:
                db.execute("COMMIT")
        out: ResourceList[R] = ResourceList()
        for (text,) in rows:
            data = json.loads(text)
            if selector_matches(data["metadata"].get("labels") or {}, labels):
                out.append(cls.model_validate(data))
        out.resource_version = rev
        return out

    def _replace(self, obj: R, *, status_only: bool, timeout: float | None = None) -> R:
        with self._write(timeout) as db:
            data = self._replaced(db, obj, status_only=status_only)
        return type(obj).model_validate(data)  # after the lock: ~5 ms for a large NodeConfig

    def _replace_in(self, db: sqlite3.Connection, obj: R, *, status_only: bool) -> R:
        return type(obj).model_validate(self._replaced(db, obj, status_only=status_only))

    def _replaced(
        self, db: sqlite3.Connection, obj: Resource, *, status_only: bool
    ) -> dict[str, Any]:
        """Write `obj` over the stored one (in the open transaction); returns the stored
        form. The write lock is held throughout: no copies (the loaded object is this
        call's own; a deep copy of a 250-peer NodeConfig took 13 ms, in every status write
        of every agent) and no validation here."""
        cls = type(obj)
        current = self._load(db, cls.KIND, obj.key)
        if current is None:
            raise NotFound(f"{cls.KIND} {obj.key} not found")
        want_rv = obj.metadata.resource_version
        if want_rv is not None and want_rv != current["metadata"]["resourceVersion"]:
            raise Conflict(
                f"{cls.KIND} {obj.key} was changed by someone else "
                f"(resourceVersion {want_rv} is stale, current is "
                f"{current['metadata']['resourceVersion']})"
            )
        new = obj.to_dict()
        if status_only:
            if not cls.HAS_STATUS:
                raise StoreError(f"{cls.KIND} has no status")
            if new.get("status", {}) == current.get("status", {}):
                return current  # nothing changed: no new revision
            data = {**current, "status": new.get("status", {})}
        else:
            data = new
            meta, old_meta = data["metadata"], current["metadata"]
            for field in ("uid", "creationTimestamp", "generation", "resourceVersion"):
                if field in old_meta:
                    meta[field] = old_meta[field]
            if cls.HAS_STATUS:
                data["status"] = current.get("status", {})
            if data.get("spec") != current.get("spec"):
                meta["generation"] = int(old_meta.get("generation", 1)) + 1
            if data == current:
                return current  # nothing changed: no new revision
        self._record(db, cls.KIND, obj.key, "MODIFIED", data)
        return data

    def update(self, obj: R, *, timeout: float | None = None) -> R:
        return self._replace(obj, status_only=False, timeout=timeout)

    def update_status(self, obj: R) -> R:
        return self._replace(obj, status_only=True)

    def delete(self, cls: type[R], name: str, namespace: str | None = None) -> R:
        key = _key(cls, name, namespace)
        with self._write() as db:
            data = self._load(db, cls.KIND, key)
            if data is None:
                raise NotFound(f"{cls.KIND} {name} not found")
            data["metadata"]["deletionTimestamp"] = now_rfc3339()
            self._record(db, cls.KIND, key, "DELETED", data)
        return cls.model_validate(data)

    def apply_all(self, objects: Sequence[Resource]) -> builtins.list[Resource]:
        """One transaction: every object is created or updated, or none is."""
        out: builtins.list[Resource] = []
        with self._write() as db:
            for obj in objects:
                cls = type(obj)
                current = self._load(db, cls.KIND, obj.key)
                if obj.metadata.resource_version is not None:
                    # kubectl's rule: a resourceVersion in what is applied must be current.
                    if current is None:
                        raise Conflict(_gone(cls.KIND, obj.key, obj.metadata.resource_version))
                    written: Resource = self._replace_in(db, obj, status_only=False)
                elif current is None:
                    written = self._create(db, obj)
                else:
                    unconditional = obj.model_copy(deep=True)
                    unconditional.metadata.resource_version = None
                    written = self._replace_in(db, unconditional, status_only=False)
                if cls.HAS_STATUS and "status" in obj.model_fields_set:
                    written = self._replace_in(db, _with_status(written, obj), status_only=True)
                out.append(written)
        return out

    def patch_all(self, objects: Sequence[Resource]) -> builtins.list[str]:
        """One transaction, and as little as possible inside it: each object's new stored
        form is worked out before, from a read of what is stored (JSON, never decoded into
        models); inside, an object whose revision moved since that read is worked out
        again, the others are only written. A network-manager writing 50 NodeConfigs of
        ~50 KB in one transaction held the lock for ~75 ms of CPU - seconds on a saturated
        host, while every lease renewal waited."""
        keyed = [(type(obj), obj.key, obj.to_dict()) for obj in objects]
        with self._lock:
            seen = {(cls.KIND, key): self._load(self._db, cls.KIND, key) for cls, key, _ in keyed}
        read_rv = {
            k: None if v is None else v["metadata"]["resourceVersion"] for k, v in seen.items()
        }
        marker = f"@rv-{uuid.uuid4()}@"
        planned = {
            (cls.KIND, key): self._patched(cls, seen[(cls.KIND, key)], new, marker)
            for cls, key, new in keyed
        }
        written: builtins.list[str] = []
        with self._write() as db:
            for cls, key, new in keyed:
                row = db.execute(
                    "SELECT rv FROM objects WHERE kind = ? AND key = ?", (cls.KIND, key)
                ).fetchone()
                moved = (None if row is None else str(row[0])) != read_rv[(cls.KIND, key)]
                if moved:  # someone wrote it since the read: work it out again, here
                    now = self._load(db, cls.KIND, key)
                    patched = self._patched(cls, now, new, marker)
                else:
                    patched = planned[(cls.KIND, key)]
                if patched is None:
                    continue
                etype, text = patched
                rv = self._next_revision(db)
                text = text.replace(f'"{marker}"', f'"{rv}"', 1)
                self._put(db, cls.KIND, key, rv, etype, text)
                written.append(key)
        return written

    @staticmethod
    def _patched(
        cls: type[Resource], current: dict[str, Any] | None, new: dict[str, Any], marker: str
    ) -> tuple[EventType, str] | None:
        """What `patch_all` stores for `new` over `current` (None: nothing to write), as
        JSON text with `marker` for its resourceVersion."""
        if current is None:
            data = {**new, "metadata": dict(new["metadata"])}
            if cls.HAS_STATUS:
                data["status"] = _empty_status(cls)
            meta = data["metadata"]
            meta.update(uid=str(uuid.uuid4()), generation=1, creationTimestamp=now_rfc3339())
            meta.pop("deletionTimestamp", None)
            etype: EventType = "ADDED"
        else:
            meta = current["metadata"]
            labels = {**(meta.get("labels") or {}), **(new["metadata"].get("labels") or {})}
            spec_changed = new.get("spec") != current.get("spec")
            if not spec_changed and labels == (meta.get("labels") or {}):
                return None
            data = current
            if labels:
                meta["labels"] = labels
            if spec_changed:
                meta["generation"] = int(meta.get("generation", 1)) + 1
                if "spec" in new:
                    data["spec"] = new["spec"]
                else:
                    data.pop("spec", None)
            etype = "MODIFIED"
        data["metadata"]["resourceVersion"] = marker
        return etype, json.dumps(data, separators=(",", ":"), sort_keys=True)

    def revision(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT v FROM meta WHERE k = 'revision'").fetchone()[0])

    def kind_revision(self, cls: type[Resource]) -> int | None:
        """None for a kind without a row: not written since the table came (a store from
        before it may still hold such objects), so unknown."""
        with self._lock:
            row = self._db.execute("SELECT rv FROM kinds WHERE kind = ?", (cls.KIND,)).fetchone()
        return None if row is None else int(row[0])

    def watch(
        self,
        cls: type[R],
        since: int,
        stop: threading.Event | None = None,
        timeout: float | None = None,
        name: str | None = None,
    ) -> Iterator[WatchEvent[R]]:
        # A connection of its own: a watcher must not hold the writer's lock while it waits.
        db = self._connect()
        # One object: by its key (a namespaced kind's in kosmos-system, where the Kubernetes
        # store watches namespaced kinds).
        key = None if name is None else _key(cls, name, C.DEFAULT_NAMESPACE)
        changes = Doorbell.make(self._doorbell_dir(cls.KIND, key))  # before the first read
        deadline = None if timeout is None else time.monotonic() + timeout
        last = since
        seen_version = -1
        checked = False  # the first look reads the log (and may find it compacted)
        try:
            with woken_by(stop, None if changes is None else changes.ring):
                while True:
                    version = db.execute("PRAGMA data_version").fetchone()[0]
                    if (
                        version != seen_version
                        and checked
                        and not self._kind_changed(db, cls, last)
                    ):
                        seen_version = version  # other kinds' commits
                    if version != seen_version:
                        seen_version, checked = version, True
                        db.execute("BEGIN")
                        try:
                            compacted = db.execute(
                                "SELECT v FROM meta WHERE k='compacted'"
                            ).fetchone()[0]
                            if last < compacted:
                                raise Expired(
                                    f"revision {last} is compacted (the log starts after {compacted}); "
                                    "list again and watch from the list's revision"
                                )
                            if key is None:
                                rows = db.execute(
                                    "SELECT rv, type, data FROM changes WHERE kind = ? AND rv > ? "
                                    "ORDER BY rv",
                                    (cls.KIND, last),
                                ).fetchall()
                            else:
                                rows = db.execute(
                                    "SELECT rv, type, data FROM changes WHERE kind = ? AND rv > ? "
                                    "AND key = ? ORDER BY rv",
                                    (cls.KIND, last, key),
                                ).fetchall()
                        finally:
                            db.execute("COMMIT")
                        for rv, etype, text in rows:
                            last = rv
                            yield WatchEvent(etype, cls.model_validate_json(text), rv)
                        if rows:
                            seen_version = -1  # more may have landed while we yielded
                            continue
                    if stop is not None and stop.is_set():
                        return
                    if deadline is not None and time.monotonic() >= deadline:
                        return
                    left = None if deadline is None else max(0.0, deadline - time.monotonic())
                    if changes is not None:
                        changes.wait(SAFETY_NET if left is None else min(left, SAFETY_NET))
                    elif stop is not None:
                        stop.wait(self.poll_interval)
                    else:
                        time.sleep(self.poll_interval)
        finally:
            db.close()
            if changes is not None:
                changes.close()

    @staticmethod
    def _kind_changed(db: sqlite3.Connection, cls: type[Resource], last: int) -> bool:
        """Whether the kind has a revision after `last` (one indexed row: what the safety
        net and a stray wake-up cost). A kind without a row (a store written before the
        table existed, not yet written since) counts as changed."""
        row = db.execute("SELECT rv FROM kinds WHERE kind = ?", (cls.KIND,)).fetchone()
        return row is None or int(row[0]) > last

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _empty_status(cls: type[Resource]) -> dict[str, Any]:
    """The stored form of an empty status of `cls` (what `_create` writes)."""
    data = cls.model_validate({"metadata": {"name": "x"}, "status": {}}).to_dict()
    return cast(dict[str, Any], data.get("status", {}))


def _with_status(written: R, source: Resource) -> R:
    return written.model_copy(update={"status": getattr(source, "status")})  # noqa: B009
