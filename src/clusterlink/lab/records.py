"""Which running process is which lab component: a file per component process.

`<stateDir>/procs/<pid>.json` holds `{"name": NAME, "start": START}`, START being the
process's start time (/proc/PID/stat). The component's process writes it itself, right after
the fork and before it runs anything, so a supervisor killed at any moment leaves no
component unrecorded; the supervisor removes it when it reaps the process. A record counts
only while a process with that pid *and* that start time is alive: a pid the kernel reused
after a crash is not mistaken for the component (such stale records are skipped, and
`prune` removes them). What the component's own children run (iptables, ip) has no record.

(Forked components share their parent's initial environment, so /proc/PID/environ cannot
tell them apart; a file per process can, and reading one directory is cheaper than every
process's environment.)
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from clusterlink.lab.spawn import start_time

DIR = "procs"


def _path(state_dir: Path, pid: int) -> Path:
    return state_dir / DIR / f"{pid}.json"


def write(state_dir: Path, pid: int, name: str) -> None:
    """Record that process `pid` (now running) is component `name`."""
    (state_dir / DIR).mkdir(exist_ok=True)
    tmp = state_dir / DIR / f"{pid}.tmp"
    tmp.write_text(json.dumps({"name": name, "start": start_time(pid)}))
    tmp.replace(_path(state_dir, pid))


def remove(state_dir: Path, pid: int) -> None:
    with contextlib.suppress(FileNotFoundError):
        _path(state_dir, pid).unlink()


def _read(state_dir: Path) -> dict[int, tuple[str, int | None]]:
    """Every record: pid -> (name, start time)."""
    out: dict[int, tuple[str, int | None]] = {}
    try:
        paths = list((state_dir / DIR).glob("*.json"))
    except OSError:
        return out
    for path in paths:
        try:
            data = json.loads(path.read_text())
            out[int(path.stem)] = (str(data["name"]), data["start"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # being replaced, or not ours: no record
    return out


def _is(pid: int, start: int | None) -> bool:
    """The process `pid` runs (not a zombie) and is the one that started at `start`."""
    return start is not None and start_time(pid) == start and _running(pid)


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def running(state_dir: Path) -> dict[str, list[int]]:
    """The lab's component processes that run now: name -> pids, the oldest first."""
    alive = [
        (start, pid, name) for pid, (name, start) in _read(state_dir).items() if _is(pid, start)
    ]
    found: dict[str, list[int]] = {}
    for _, pid, name in sorted(alive):
        found.setdefault(name, []).append(pid)
    return found


def prune(state_dir: Path) -> list[int]:
    """Remove the records of processes that are gone; their pids."""
    stale = [pid for pid, (_, start) in _read(state_dir).items() if not _is(pid, start)]
    for pid in stale:
        remove(state_dir, pid)
    return stale
