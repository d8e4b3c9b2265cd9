"""Doorbells: FIFOs a waiter sleeps on and writers ring (one byte) after a change.

A waiter makes its own FIFO in a directory (`Doorbell.make`; hidden until open, so no writer
takes it for a dead one) and holds it open for reading and writing (no EOF between writers;
`ring` wakes it from inside, e.g. to stop). A writer rings every doorbell in the directory
(`ring_all`) and removes those nobody reads (their waiter died). Used by the SQLite store's
watchers and the lab's felix.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import uuid
from pathlib import Path


class Doorbell:
    """A watcher's FIFO: writers ring it (write a byte) after a commit of what it watches."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path, self.fd = path, fd

    @classmethod
    def make(cls, directory: Path) -> Doorbell | None:
        """A new doorbell in `directory` (None when none can be made: the watcher polls).
        Opened under a hidden name first, so no writer takes it for a dead one."""
        name = f"{os.getpid()}.{uuid.uuid4().hex[:12]}"
        hidden, path = directory / f".{name}", directory / name
        try:
            directory.mkdir(parents=True, exist_ok=True)
            os.mkfifo(hidden, 0o600)
        except OSError:
            return None
        try:
            fd = os.open(hidden, os.O_RDWR | os.O_NONBLOCK)  # a reader (and writer): no EOF
        except OSError:
            hidden.unlink(missing_ok=True)
            return None
        try:
            hidden.rename(path)
        except OSError:
            os.close(fd)
            hidden.unlink(missing_ok=True)
            return None
        return cls(path, fd)

    def wait(self, timeout: float) -> bool:
        """Until rung, or `timeout` seconds; True when rung (all rings so far consumed)."""
        if not select.select([self.fd], [], [], timeout)[0]:
            return False
        with contextlib.suppress(BlockingIOError):
            while os.read(self.fd, 4096):
                pass
        return True

    def ring(self) -> None:
        """Wake this doorbell's own waiter (signal-handler safe: one write)."""
        with contextlib.suppress(OSError):
            os.write(self.fd, b"\0")

    def close(self) -> None:
        os.close(self.fd)
        self.path.unlink(missing_ok=True)


def ring_all(directory: Path) -> None:
    """Ring every doorbell in `directory`; remove those whose watcher is gone."""
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        if name.startswith("."):
            continue  # still being made
        path = os.path.join(directory, name)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # no reader: its watcher died without closing it
                with contextlib.suppress(OSError):
                    os.unlink(path)
            continue
        try:
            os.write(fd, b"\0")
        except OSError:
            pass  # full (EAGAIN): it has rings enough to wake for
        finally:
            os.close(fd)
