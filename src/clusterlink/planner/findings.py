"""Findings: why the planner left something out or changed it. Never a silent drop."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Level = Literal["info", "warning", "error"]


@dataclass(frozen=True, order=True, slots=True)
class Finding:
    level: Level
    object: str  # "Cluster/c1", "ClusterNode/c1-a1"
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"level": self.level, "object": self.object, "message": self.message}


def sorted_findings(findings: list[Finding]) -> list[Finding]:
    """Deterministic order: by object, then message (level order follows)."""
    return sorted(set(findings), key=lambda f: (f.object, f.message, f.level))
