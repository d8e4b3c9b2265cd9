"""Namespaces for agent tests: named cl-t<pid>-..., made by a fixture and removed by it even
when the test fails."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator

import pytest

from tests.conftest import sh


@pytest.fixture
def make_netns() -> Iterator[Callable[[str], str]]:
    made: list[str] = []

    def make(tag: str) -> str:
        name = f"cl-t{os.getpid()}-{tag}"
        sh(f"ip netns add {name}")
        made.append(name)
        sh(f"ip -n {name} link set lo up")
        return name

    yield make
    for name in reversed(made):
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
