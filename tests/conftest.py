"""Shared by every test: root tests (tests/netns, tests/e2e) are marked, skipped without
root, and the whole session must leave the host (root) network namespace as it found it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# The console scripts of the environment running the tests (not whatever is on PATH).
CLUSTERLINK = str(Path(sys.executable).with_name("clusterlink"))
KOSMOSCTL = str(Path(sys.executable).with_name("kosmosctl"))
ROOT_DIRS = ("tests/netns", "tests/e2e")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if any(d in str(item.fspath) for d in ROOT_DIRS):
            item.add_marker(pytest.mark.netns)
            if os.geteuid() != 0:
                item.add_marker(pytest.mark.skip(reason="needs root (network namespaces)"))


def pids_by_argv(match: Callable[[list[bytes]], bool]) -> list[int]:
    """Processes whose command line (argv as bytes) `match` accepts, in pid order."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if match(argv):
            found.append(int(entry.name))
    return sorted(found)


def sh(cmd: str, check: bool = True) -> str:
    proc = subprocess.run(cmd, shell=True, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd!r} failed: {proc.stderr.strip()}")
    return proc.stdout


def host_state() -> str:
    """What our code must never change in the host (root) namespace."""
    parts = [
        sh("ip -o link show | sed 's/ state [A-Z]*//'"),
        sh("ip route show table all"),
        sh("ip -6 route show table all"),
        sh("ip rule; ip -6 rule"),
        sh("iptables-save 2>/dev/null | grep -v '^#'", check=False),
        sh("ip6tables-save 2>/dev/null | grep -v '^#'", check=False),
        sh("sysctl net.ipv4.ip_forward net.ipv6.conf.all.forwarding net.ipv4.conf.all.rp_filter"),
    ]
    return re.sub(r"\[\d+:\d+\]", "", "\n".join(parts))


@pytest.fixture(scope="session", autouse=True)
def host_untouched() -> Iterator[None]:
    if os.geteuid() != 0:
        yield
        return
    before = host_state()
    yield
    assert host_state() == before, "the host network namespace changed"
