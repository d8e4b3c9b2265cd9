"""Starting a lab component by fork, from a parent that imported the components' code once.

A lab runs one process per role and node (162 at 20 clusters x 5 nodes). Started as fresh
interpreters, each paid interpreter start and imports (0.3-0.5 s of CPU; on a 2-core host
the joins of a large lab waited for that) and kept its own copy of every imported module.
Forked from the supervisor, which imported them before (`preload`), a component starts in
milliseconds and shares those pages with all its siblings, copy-on-write; `gc.freeze()`
before each fork keeps the collector from writing to the shared objects (a collection
touches every object it tracks).

The child of `spawn`: a new session, the log as stdout and stderr, stdin from /dev/null,
default signal handlers, the component's environment, the node's network namespace
(setns: what `nsenter --net` did), a record of itself (`records.write`), its command line
in /proc/PID/cmdline (so `ps` and /proc show the component, not the supervisor), then:
`python -m MODULE ARGS` runs MODULE as `__main__` in this process (runpy, the way `-m`
does); any other command is exec'd. The child never returns into the parent's code: it
leaves with `os._exit`.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import gc
import importlib
import os
import runpy
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from clusterlink.agent import netns


def _suppressed() -> contextlib.suppress:
    """Ignore any exception: a child's last steps must reach os._exit."""
    return contextlib.suppress(BaseException)


PR_SET_MM, PR_SET_MM_ARG_START, PR_SET_MM_ARG_END = 35, 8, 9  # prctl(2)
TITLE_ROOM = 4096  # bytes of command line the parent keeps for its children's (see set_cmdline)
EXIT_CANNOT_START = 127  # the child could not become the component (as a shell's 127)


def preload(modules: list[str]) -> None:
    """Import what the components will run, once, then freeze the collector's view of it
    (every object alive now stays out of future collections, here and in the children)."""
    for module in modules:
        importlib.import_module(module)
    gc.collect()
    gc.freeze()


def in_process_module(argv: list[str]) -> str | None:
    """The module of `python -m MODULE ...` run by this interpreter (None: exec argv)."""
    if len(argv) < 3 or argv[1] != "-m":
        return None
    try:
        same = os.path.samefile(argv[0], sys.executable)
    except OSError:
        return None
    return argv[2] if same else None


class Forked:
    """A forked component, with the part of `subprocess.Popen`'s interface the supervisor
    uses (returncode: the exit code, or -N for signal N)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped elsewhere: gone, status unknown
                self.returncode = -1
                return self.returncode
            if pid == self.pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(str(self.pid), timeout or 0.0)
            time.sleep(0.01)
        return code

    def _signal(self, sig: int) -> None:
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def terminate(self) -> None:
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)


def spawn(
    argv: list[str],
    netns_name: str | None,
    env: dict[str, str],
    log_fd: int,
    in_child: Callable[[int], None],
) -> Forked:
    """Fork the component `argv` (see the module's docstring). `in_child(pid)` runs first
    in the child: what the parent's state needs there (close what is not the child's,
    record it)."""
    sys.stdout.flush()
    sys.stderr.flush()
    gc.freeze()  # what the parent allocated since, too: no child collection touches it
    pid = os.fork()
    if pid:
        return Forked(pid)
    code = EXIT_CANNOT_START
    try:
        os.setsid()
        _stdio(log_fd)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        atexit._clear()  # the parent's exit handlers are not the component's
        in_child(os.getpid())
        os.environ.update(env)
        if netns_name is not None:
            netns.enter(netns_name)
        module = in_process_module(argv)
        if module is None:
            os.execvpe(argv[0], argv, dict(os.environ))
        title = set_cmdline(argv)  # noqa: F841 - the kernel reads the title from this buffer
        code = _run_module(module, argv[3:])
    except BaseException as exc:  # nothing may return into the parent's code
        with _suppressed():
            os.write(2, f"cannot start: {exc}\n".encode())
    finally:
        os._exit(code)


def _stdio(log_fd: int) -> None:
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)


def _run_module(module: str, args: list[str]) -> int:
    """`python -m module args` in this process; its exit code. Ends as the interpreter
    would: non-daemon threads joined, then the exit handlers, then the streams flushed."""
    sys.argv = [module, *args]
    code = 0
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        code = _exit_code(exc.code)
    except BaseException:  # an uncaught exception: printed, exit 1
        traceback.print_exc()
        code = 1
    with _suppressed():
        shutdown = getattr(threading, "_shutdown", None)
        if shutdown is not None:
            shutdown()
    with _suppressed():
        atexit._run_exitfuncs()
    with _suppressed():
        sys.stdout.flush()
        sys.stderr.flush()
    return code


def _exit_code(value: object) -> int:
    """SystemExit's code as the interpreter maps it: None 0, an int itself, else printed, 1."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value & 0xFF
    with _suppressed():
        print(value, file=sys.stderr)
    return 1


def title_room() -> int:
    """Bytes of this process's command line area (/proc/PID/cmdline shows what is there)."""
    stat = _stat(os.getpid())
    return stat[46] - stat[45]  # fields 49 and 48: arg_end, arg_start


def make_title_room(room: int = TITLE_ROOM) -> None:
    """Unless this process's command line area holds `room` bytes, exec it again with empty
    arguments added to its command line (each one byte; `ps` shows them as nothing), so a
    forked child can write its own command line in place of the parent's (`set_cmdline`).
    The caller must accept (and ignore) those empty arguments."""
    if title_room() < room:
        os.execv(sys.executable, [*sys.orig_argv, *[""] * room])


def set_cmdline(argv: list[str]) -> object | None:
    """Make /proc/PID/cmdline of this process read `argv`. With CAP_SYS_RESOURCE the kernel
    points it at a new buffer (prctl PR_SET_MM; returned: it must stay alive); without it,
    `argv` overwrites the area the command line had, when it fits (`make_title_room`).
    None: neither worked, the parent's command line stays."""
    raw = b"\0".join(a.encode() for a in argv) + b"\0"
    buf = ctypes.create_string_buffer(raw, len(raw))
    start, end = ctypes.addressof(buf), ctypes.addressof(buf) + len(raw)
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    stat = _stat(os.getpid())
    old_start, old_end = stat[45], stat[46]
    # The kernel refuses a change that leaves start > end: a buffer below the old one's end
    # moves its start first, one above it its end first.
    order = [(PR_SET_MM_ARG_START, start), (PR_SET_MM_ARG_END, end)]
    if start > old_end:
        order.reverse()
    if prctl(PR_SET_MM, *order[0], 0, 0) == 0:
        if prctl(PR_SET_MM, *order[1], 0, 0) == 0:
            return buf
        prctl(
            PR_SET_MM,
            order[0][0],
            old_start if order[0][0] == PR_SET_MM_ARG_START else old_end,
            0,
            0,
        )
    size = old_end - old_start
    if len(raw) > size:
        return None
    # The old area ends in NUL bytes: the kernel then shows it as it is, NULs separating
    # arguments (a last byte that is not NUL would make it read one setproctitle string).
    ctypes.memmove(old_start, raw.ljust(size, b"\0"), size)
    return raw


def _stat(pid: int) -> list[int]:
    """/proc/PID/stat's numeric fields from the state on (field 3 is index 0; the state
    letter reads as 0)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return [int(f) if f.lstrip("-").isdigit() else 0 for f in fields]


def start_time(pid: int) -> int | None:
    """When `pid` started (clock ticks after boot, /proc/PID/stat field 22): with the pid, it
    names one process for good (a pid alone may be reused)."""
    try:
        return _stat(pid)[19]
    except (OSError, IndexError):
        return None
