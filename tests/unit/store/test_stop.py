"""`Stop`: setting it calls the wake-ups hooked to it; a SQLite watch under a `Stop` ends when
it is set, not at the store's 10 s safety net."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from clusterlink.api import Cluster
from clusterlink.store import sqlite
from clusterlink.store.sqlite import SqliteStore
from clusterlink.store.stop import Stop, woken_by


def test_set_calls_the_hooks_of_the_blocks_still_running() -> None:
    stop, calls = Stop(), []
    with stop.hook(lambda: calls.append("a")):
        with stop.hook(lambda: calls.append("b")):
            pass  # b's block is over: not called
        stop.set()
    assert calls == ["a"]
    assert stop.is_set()


def test_a_hook_on_a_set_stop_is_called_at_once() -> None:
    stop, calls = Stop(), []
    stop.set()
    with stop.hook(lambda: calls.append("late")):
        assert calls == ["late"]


def test_woken_by_a_plain_event_hooks_nothing() -> None:
    stop, calls = threading.Event(), []
    with woken_by(stop, lambda: calls.append("x")):
        stop.set()
    assert calls == []


def test_a_watch_under_a_stop_ends_when_it_is_set(tmp_path: Path) -> None:
    assert sqlite.SAFETY_NET >= 5  # what the stop must cut short
    store = SqliteStore(tmp_path / "s.db")
    stop = Stop()
    seen: list[str] = []

    def watch() -> None:
        for event in store.watch(Cluster, store.revision(), stop=stop):
            seen.append(event.object.name)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    time.sleep(0.3)  # asleep on its doorbell
    began = time.monotonic()
    stop.set()
    thread.join(timeout=5)
    assert not thread.is_alive(), "the watch did not end when its Stop was set"
    assert time.monotonic() - began < 2.0
    assert seen == []
