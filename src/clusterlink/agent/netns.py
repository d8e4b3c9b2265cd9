"""Entering a network namespace from one thread, and running tools inside one.

setns(CLONE_NEWNET) acts on the calling thread only, so many agents (one per lab node) can
live in one process, each socket bound to its namespace at creation. pyroute2's
`IPRoute(netns=...)` forks per socket (~10 ms) and its pushns/popns keep a process-global
stack; this is a few lines of ctypes instead (~0.03 ms).
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterator
from contextlib import contextmanager

CLONE_NEWNET = 0x40000000
NETNS_DIR = "/run/netns"

_libc = ctypes.CDLL(None, use_errno=True)


class NetnsError(OSError):
    pass


def netns_path(name: str) -> str:
    return os.path.join(NETNS_DIR, name)


def exists(name: str) -> bool:
    return os.path.exists(netns_path(name))


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise NetnsError(err, f"setns: {os.strerror(err)}")


def enter(name: str) -> None:
    """Move this thread into namespace `name` for good (a process about to run inside it:
    threads it starts later inherit it, as do the processes they run)."""
    try:
        target = os.open(netns_path(name), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NetnsError(2, f"network namespace {name!r} does not exist") from None
    try:
        _setns(target)
    finally:
        os.close(target)


@contextmanager
def entered(name: str | None) -> Iterator[None]:
    """Run the body with this thread in namespace `name` (None: stay where we are)."""
    if name is None:
        yield
        return
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        enter(name)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(home)


def command(name: str | None, argv: list[str]) -> list[str]:
    """argv run inside the namespace (nsenter keeps the mount namespace, unlike `ip netns exec`)."""
    if name is None:
        return argv
    return ["nsenter", f"--net={netns_path(name)}", "--", *argv]
