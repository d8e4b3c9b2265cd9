"""Felix's doorbell: a pool write wakes it at once, without a poll; no felix, no error."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from clusterlink.lab import cni
from clusterlink.store.doorbell import Doorbell


def felix_bell(directory: Path) -> Doorbell:
    bell = Doorbell.make(directory / cni.BELLS)
    assert bell is not None
    return bell


def test_a_pool_write_rings_felix(tmp_path: Path) -> None:
    bell = felix_bell(tmp_path)
    try:
        assert not bell.wait(0.05)  # nobody rang
        woke: list[float] = []

        def waiter() -> None:
            start = time.monotonic()
            assert bell.wait(5)
            woke.append(time.monotonic() - start)

        thread = threading.Thread(target=waiter)
        thread.start()
        time.sleep(0.05)
        cni.change_pools(tmp_path / "c1.json", [{"metadata": {"name": "p"}, "spec": {}}], [])
        thread.join(5)
        assert woke and woke[0] < 1, f"felix woke {woke} s after the write"
        cni.change_pools(tmp_path / "c1.json", [], ["p"])
        cni.change_pools(tmp_path / "c1.json", [], ["p", "q"])  # nothing left to delete
        assert bell.wait(0)  # rings that came while felix was busy wake it once...
        assert not bell.wait(0)  # ...and are all consumed
    finally:
        bell.close()


def test_writes_without_felix_need_no_doorbell(tmp_path: Path) -> None:
    cni.change_pools(tmp_path / "c1.json", [{"metadata": {"name": "p"}, "spec": {}}], [])
    assert cni.read_pools(tmp_path / "c1.json")[0]["metadata"]["name"] == "p"
    bell = felix_bell(tmp_path)
    bell.close()  # a felix that stopped leaves its FIFO: nobody reads it, the write goes on
    cni.change_pools(tmp_path / "c1.json", [], ["p"])
    assert cni.read_pools(tmp_path / "c1.json") == []


def test_stop_wakes_a_sleeping_felix(tmp_path: Path) -> None:
    bell = felix_bell(tmp_path)
    try:
        bell.ring()
        assert bell.wait(5)
    finally:
        bell.close()
