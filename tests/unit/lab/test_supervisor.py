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

from clusterlink.lab import lifecycle, records, supervisor
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


def parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


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
    copies = [subprocess.Popen(["sleep", marker], start_new_session=True) for _ in range(2)]
    stray = subprocess.Popen(["sleep", marker], start_new_session=True)
    for proc in copies:  # as a killed supervisor's children would have recorded themselves
        records.write(state, proc.pid, "a")
    records.write(state, stray.pid, "gone")
    try:
        supervisor.register(state, "a", None, ["sleep", marker])
        start_supervisor(state)
        wait_for(lambda: stray.poll() is not None and sum(c.poll() is None for c in copies) == 1)
        time.sleep(0.6)
        assert len(sleepers(marker)) == 1
        assert supervisor.running_components(state)["a"] == sleepers(marker)
        assert "gone" not in supervisor.running_components(state)
    finally:
        for proc in (*copies, stray):
            if proc.poll() is None:
                proc.kill()
            proc.wait()


def test_a_forked_component_runs_its_module_in_its_own_process(state: Path) -> None:
    """`python -m clusterlink...` is forked from the supervisor, not exec'd: a process of its
    own (its pid, its log, its environment, its exit code restarting it), whose parent is the
    supervisor."""
    argv = [sys.executable, "-m", "clusterlink.cli.components", "version"]
    supervisor.register(state, "v", None, argv, {"CLUSTERLINK_TEST_MARK": "m1"})
    sup = start_supervisor(state)
    log = state / "logs" / "v.log"
    wait_for(lambda: log.exists() and log.read_text().count("clusterlink ") >= 2)  # restarted
    assert "exited with 0" in log.read_text()
    assert supervisor.read_status(state)["v"]["restarts"] >= 1
    supervisor.unregister(state, ["v"])
    supervisor.register(state, "env", None, [sys.executable, "-c", "import time; time.sleep(60)"])
    supervisor.register(
        state,
        "mod",
        None,
        [sys.executable, "-m", "tests.unit.lab.component", "60"],
        {"CLUSTERLINK_TEST_MARK": "m2"},
    )
    pid = wait_for(lambda: supervisor.running_components(state).get("mod", [None])[0])
    assert supervisor.running_components(state).get("env")  # -c is exec'd, and recorded too
    assert parent(pid) == sup
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
    assert cmdline == [a.encode() for a in supervisor.read_components(state)["mod"]["argv"]]
    out = state / "logs" / "mod.log"
    wait_for(lambda: out.exists() and "ready" in out.read_text())
    said = dict(line.split("=", 1) for line in out.read_text().splitlines() if "=" in line)
    assert said["pid"] == str(pid) and said["mark"] == "m2" and said["name"] == "__main__"
    assert said["argv"] == "60"
    os.kill(pid, signal.SIGTERM)  # default SIGTERM: it dies of it, and is restarted
    wait_for(lambda: (p := supervisor.running_components(state).get("mod")) and p[0] != pid)
    assert supervisor.read_status(state)["mod"]["lastExit"] == -signal.SIGTERM
