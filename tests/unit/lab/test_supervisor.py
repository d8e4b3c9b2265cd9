"""The lab supervisor outlived: killed with SIGKILL, it is reported dead; a new one adopts the
components still running (each runs once), restarts the dead ones and ends extra copies.

No namespaces: the components here run in the test's own network namespace."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from clusterlink.lab import lifecycle, supervisor
from clusterlink.lab.state import ENV_LAB_DIR
from tests.conftest import pids_by_argv

LAB = "lssup"
T = TypeVar("T")


def wait_for(check: Callable[[], T | None], timeout: float = 20.0) -> T:
    deadline = time.monotonic() + timeout
    while (value := check()) is None or value is False:
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
    return value


def sleepers(marker: str) -> list[int]:
    """Processes whose command line is `sleep <marker>`: what runs, counted without the
    supervisor's own bookkeeping."""
    mine = pids_by_argv(lambda argv: argv[:2] == [b"sleep", marker.encode()])
    return [pid for pid in mine if supervisor.alive(pid)]


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv(ENV_LAB_DIR, str(tmp_path))
    d = tmp_path / LAB
    (d / "logs").mkdir(parents=True)
    (d / "lab.json").write_text("{}")
    yield d
    for pids in supervisor.running_components(d).values():
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
    if (left := supervisor.supervisor_pid(d)) is not None:
        os.kill(left, signal.SIGKILL)


def start_supervisor(d: Path) -> int:
    subprocess.Popen(
        [sys.executable, "-m", "clusterlink.cli.components", "lab-supervisor", "--lab", LAB],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    return wait_for(lambda: supervisor.supervisor_pid(d))


def test_a_killed_supervisor_is_reported_and_its_successor_starts_nothing_twice(
    state: Path,
) -> None:
    a, b = f"3{os.getpid() % 1000:03d}1", f"3{os.getpid() % 1000:03d}2"
    supervisor.register(state, "a", None, ["sleep", a])
    supervisor.register(state, "b", None, ["sleep", b])
    first = start_supervisor(state)
    wait_for(lambda: len(sleepers(a)) == 1 and len(sleepers(b)) == 1)
    assert lifecycle.processes(LAB)["supervisor"] == {"state": "running", "pid": first}

    os.kill(first, signal.SIGKILL)
    wait_for(lambda: not supervisor.alive(first))
    (b_pid,) = sleepers(b)
    os.kill(b_pid, signal.SIGKILL)  # dies while nobody supervises
    wait_for(lambda: not sleepers(b))
    seen = lifecycle.processes(LAB)
    assert seen["supervisor"] == {"state": "dead", "pid": first}
    assert seen["components"]["a"]["state"] == "unsupervised"
    assert seen["components"]["a"]["pid"] == sleepers(a)[0]
    assert seen["components"]["b"]["state"] == "dead"

    (a_pid,) = sleepers(a)
    second = start_supervisor(state)
    wait_for(lambda: len(sleepers(b)) == 1)
    time.sleep(1.0)  # five supervisor rounds: time to start anything twice, if it would
    assert sleepers(a) == [a_pid]  # adopted, not started again
    assert len(sleepers(b)) == 1  # restarted once
    rows = lifecycle.processes(LAB)
    assert rows["supervisor"] == {"state": "running", "pid": second}
    assert rows["components"]["a"]["adopted"] and rows["components"]["a"]["pid"] == a_pid

    os.kill(second, signal.SIGTERM)  # a clean stop ends adopted components too
    wait_for(lambda: not sleepers(a) and not sleepers(b))


def test_a_new_supervisor_ends_extra_copies_and_unwanted_components(state: Path) -> None:
    marker = f"3{os.getpid() % 1000:03d}3"
    env = {**os.environ, supervisor.ENV_COMPONENT: supervisor.component_tag(state, "a")}
    copies = [
        subprocess.Popen(["sleep", marker], env=env, start_new_session=True) for _ in range(2)
    ]
    stray_env = {**env, supervisor.ENV_COMPONENT: supervisor.component_tag(state, "gone")}
    stray = subprocess.Popen(["sleep", marker], env=stray_env, start_new_session=True)
    try:
        supervisor.register(state, "a", None, ["sleep", marker])
        start_supervisor(state)
        wait_for(lambda: stray.poll() is not None and sum(c.poll() is None for c in copies) == 1)
        time.sleep(0.6)
        assert len(sleepers(marker)) == 1
    finally:
        for proc in (*copies, stray):
            if proc.poll() is None:
                proc.kill()
            proc.wait()
