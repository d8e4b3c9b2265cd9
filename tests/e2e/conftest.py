"""Lab fixtures: a lab in a temporary state directory, always taken down."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from clusterlink.lab.lifecycle import lab_down, lab_up
from clusterlink.lab.topology import LabPlan, Topology, plan_lab


@pytest.fixture
def lab_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "labs"
    monkeypatch.setenv("CLUSTERLINK_LAB_DIR", str(root))
    return root


@pytest.fixture
def make_lab(lab_dir: Path) -> Iterator[Callable[[dict[str, object]], LabPlan]]:
    made: list[str] = []

    def make(topology: dict[str, object]) -> LabPlan:
        plan = plan_lab(Topology.model_validate(topology))
        made.append(plan.name)
        lab_up(plan, quiet=True)
        return plan

    yield make
    for name in made:
        lab_down(name, quiet=True)


def lab_name(tag: str) -> str:
    """Unique per test process: lab names are 1-12 lowercase letters and digits."""
    return f"{tag}{os.getpid() % 100000}"
