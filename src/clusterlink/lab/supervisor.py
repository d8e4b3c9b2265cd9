"""The lab supervisor: keeps component processes running inside node namespaces.

Desired components live in `<stateDir>/components.json` ({name: {netns, argv}}), written by
`register`/`unregister` (under a file lock) - from `kosmosctl lab run` or from install/join.
The supervisor (one process per lab, `clusterlink lab-supervisor --lab NAME`, started by
`lab up`) converges on that file: starts what is missing, stops what was removed, restarts
what exited with exponential backoff (0.5 s doubling to 30 s; reset after 30 s of health), logs
each component to `<stateDir>/logs/<name>.log`, and reports in `<stateDir>/supervisor.json`.

It starts every component by fork (`lab.spawn`): having imported the components' code once
(`preload`), a `python -m clusterlink...` component runs in the forked child without a new
interpreter, sharing the imported pages with its siblings; other commands are exec'd.

Components outlive a supervisor that was killed (each runs in its own session). Each records
itself in `<stateDir>/procs/` (`lab.records`: pid and start time), so a new supervisor finds
the ones still running and adopts them instead of starting them twice (and ends extra copies
and components no longer wanted).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clusterlink.lab import records, spawn

BACKOFF_MIN, BACKOFF_MAX, HEALTHY_AFTER = 0.5, 30.0, 30.0


@contextlib.contextmanager
def _locked(state_dir: Path) -> Iterator[None]:
    with open(state_dir / "components.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def read_components(state_dir: Path) -> dict[str, dict[str, Any]]:
    try:
        data: dict[str, dict[str, Any]] = json.loads((state_dir / "components.json").read_text())
    except FileNotFoundError:
        return {}
    return data


def _write_components(state_dir: Path, components: dict[str, dict[str, Any]]) -> None:
    tmp = state_dir / "components.json.tmp"
    tmp.write_text(json.dumps(components, indent=1, sort_keys=True))
    tmp.replace(state_dir / "components.json")


@dataclass(frozen=True)
class Spec:
    """A component: its namespace (None: the supervisor's), its command line, its env."""

    netns: str | None
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"netns": self.netns, "argv": self.argv, **({"env": self.env} if self.env else {})}


def register(
    state_dir: Path,
    name: str,
    netns_name: str | None,
    argv: list[str],
    env: dict[str, str] | None = None,
) -> None:
    register_all(state_dir, {name: Spec(netns_name, argv, env or {})})


def register_all(state_dir: Path, specs: dict[str, Spec]) -> None:
    """Add or replace these components, in one write."""
    with _locked(state_dir):
        components = read_components(state_dir)
        components.update({name: spec.to_dict() for name, spec in specs.items()})
        _write_components(state_dir, components)


def unregister(state_dir: Path, names: list[str]) -> list[str]:
    with _locked(state_dir):
        components = read_components(state_dir)
        gone = [n for n in names if components.pop(n, None) is not None]
        _write_components(state_dir, components)
    return gone


def read_status(state_dir: Path) -> dict[str, dict[str, Any]]:
    try:
        data: dict[str, dict[str, Any]] = json.loads((state_dir / "supervisor.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return data


def running_components(state_dir: Path) -> dict[str, list[int]]:
    """The lab's component processes that run now, by component name, the oldest first (from
    their records; a component's own children have none and are left out)."""
    return records.running(state_dir)


class _Adopted:
    """A component a previous supervisor started: not our child, so we cannot wait for it
    or learn its exit status; we watch /proc instead."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None  # never known

    def poll(self) -> int | None:
        return None if alive(self.pid) else -1

    def terminate(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)

    def wait(self, timeout: float | None = None) -> int | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while alive(self.pid):
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(str(self.pid), timeout or 0.0)
            time.sleep(0.02)
        return self.returncode


@dataclass
class _Child:
    spec: dict[str, Any]
    proc: spawn.Forked | _Adopted | None = None
    restarts: int = 0
    started: float = 0.0
    next_start: float = 0.0
    failures: int = 0
    last_exit: int | None = None
    log: Any = field(default=None, repr=False)
    adopted: bool = False


class Supervisor:
    """`preload`: modules to import before forking any component (what they will run)."""

    def __init__(
        self, state_dir: Path, poll: float = 0.2, preload: list[str] | None = None
    ) -> None:
        self.state_dir = state_dir
        self.poll = poll
        self.preload = preload or []
        self.children: dict[str, _Child] = {}
        self._mtime = -1.0

    def _start(self, name: str, child: _Child) -> None:
        if child.log is None:
            child.log = open(self.state_dir / "logs" / f"{name}.log", "ab")  # noqa: SIM115
        argv = list(child.spec["argv"])
        ns = child.spec.get("netns")
        where = f" (netns {ns})" if ns else ""
        child.log.write(
            f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} start{where}: {' '.join(argv)}\n".encode()
        )
        child.log.flush()

        def in_child(pid: int) -> None:
            for other in self.children.values():  # the other components' logs are not its own
                if other is not child and other.log is not None:
                    other.log.close()
            records.write(self.state_dir, pid, name)

        try:
            child.proc = spawn.spawn(
                argv, ns, dict(child.spec.get("env", {})), child.log.fileno(), in_child
            )
        except OSError as exc:  # fork refused (out of memory, pids)
            child.log.write(f"cannot start: {exc}\n".encode())
            child.proc = None
            self._backoff(child)
            return
        child.started = time.monotonic()
        child.adopted = False

    def adopt(self) -> tuple[list[str], list[int]]:
        """Take over the wanted components a previous supervisor left running; end extra
        copies and unwanted ones. (names adopted, pids ended)"""
        wanted = read_components(self.state_dir)
        adopted, ended = [], []
        for name, pids in running_components(self.state_dir).items():
            keep = pids[0] if name in wanted else None
            for pid in pids:
                if pid != keep:
                    _Adopted(pid).terminate()
                    ended.append(pid)
            if keep is None:
                continue
            child = self.children.setdefault(name, _Child(wanted[name]))
            child.proc, child.adopted, child.started = _Adopted(keep), True, time.monotonic()
            child.log = open(self.state_dir / "logs" / f"{name}.log", "ab")  # noqa: SIM115
            child.log.write(f"--- adopted pid {keep} (the supervisor was restarted)\n".encode())
            child.log.flush()
            adopted.append(name)
        for pid in ended:
            with contextlib.suppress(subprocess.TimeoutExpired):
                _Adopted(pid).wait(5.0)
            _Adopted(pid).kill()
        records.prune(self.state_dir)
        return adopted, ended

    def _backoff(self, child: _Child) -> None:
        child.failures += 1
        child.next_start = time.monotonic() + min(
            BACKOFF_MAX, BACKOFF_MIN * 2 ** (child.failures - 1)
        )

    def _stop(self, child: _Child, grace: float = 5.0) -> None:
        self._stop_all([child], grace)

    def _stop_all(self, children: list[_Child], grace: float = 5.0) -> None:
        """SIGTERM to all, then wait for each (SIGKILL after `grace`): they exit together."""
        live = [c for c in children if c.proc is not None and c.proc.poll() is None]
        for child in live:
            assert child.proc is not None
            child.proc.terminate()
        deadline = time.monotonic() + grace
        for child in live:
            assert child.proc is not None
            try:
                child.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.proc.kill()
                child.proc.wait()
        for child in children:
            if child.proc is not None:
                records.remove(self.state_dir, child.proc.pid)
            if child.log is not None:
                child.log.close()
                child.log = None

    def step(self) -> None:
        path = self.state_dir / "components.json"
        mtime = path.stat().st_mtime if path.exists() else 0.0
        if mtime != self._mtime:
            self._mtime = mtime
            wanted = read_components(self.state_dir)
            gone = [
                n for n in self.children if n not in wanted or self.children[n].spec != wanted[n]
            ]
            self._stop_all([self.children.pop(name) for name in gone])
            for name, spec in wanted.items():
                if name not in self.children:
                    self.children[name] = _Child(spec)
        now = time.monotonic()
        for name, child in self.children.items():
            if child.proc is not None and child.proc.poll() is not None:
                child.last_exit = child.proc.returncode
                records.remove(self.state_dir, child.proc.pid)
                child.proc = None
                child.restarts += 1
                if now - child.started >= HEALTHY_AFTER:
                    child.failures = 0
                self._backoff(child)
                assert child.log is not None
                child.log.write(f"--- exited with {child.last_exit}; restarting\n".encode())
                child.log.flush()
            if child.proc is None and now >= child.next_start:
                self._start(name, child)
        self._write_status()

    def _write_status(self) -> None:
        status = {
            name: {
                "pid": c.proc.pid if c.proc else None,
                "state": "running" if c.proc else "backoff",
                "restarts": c.restarts,
                "lastExit": c.last_exit,
                "netns": c.spec.get("netns"),
                "adopted": c.adopted,
            }
            for name, c in sorted(self.children.items())
        }
        tmp = self.state_dir / "supervisor.json.tmp"
        tmp.write_text(json.dumps(status, indent=1))
        tmp.replace(self.state_dir / "supervisor.json")

    def run(self, stop: threading.Event) -> None:
        # Imports first: a supervisor whose pid is recorded starts components at once (`lab
        # up` returns when it is recorded, and callers expect felix and the others to follow).
        spawn.preload(self.preload)
        pid_file = self.state_dir / "supervisor.pid"
        pid_file.write_text(str(os.getpid()))
        try:
            self.adopt()
            while not stop.is_set():
                self.step()
                stop.wait(self.poll)
        finally:
            self._stop_all(list(self.children.values()))
            self.children.clear()
            self._write_status()
            with contextlib.suppress(FileNotFoundError):
                pid_file.unlink()


def alive(pid: int) -> bool:
    """Running, and not a zombie (an exited process whose parent has not reaped it yet: our
    detached processes are reparented to PID 1, which may reap late)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def recorded_supervisor(state_dir: Path) -> int | None:
    """The pid the last supervisor wrote (it removes it when it stops cleanly)."""
    try:
        return int((state_dir / "supervisor.pid").read_text())
    except (FileNotFoundError, ValueError):
        return None


def supervisor_pid(state_dir: Path) -> int | None:
    """The lab's supervisor if it runs (a pid reused by another process does not count)."""
    pid = recorded_supervisor(state_dir)
    if pid is None or not alive(pid):
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return pid if b"lab-supervisor" in cmdline else None


def stop_supervisor(state_dir: Path, grace: float = 10.0) -> None:
    pid = supervisor_pid(state_dir)
    if pid is None:
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not alive(pid):
            return
        time.sleep(0.02)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
