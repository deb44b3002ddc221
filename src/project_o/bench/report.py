"""What a benchmark returns: rows of measurements and the targets they meet."""

from __future__ import annotations

import datetime as _dt
import os
import platform
from dataclasses import asdict, dataclass, field
from typing import Any

from project_o.errors import ProjectOError

__all__ = ["BaselineMissing", "Report", "Target", "machine_info"]


@dataclass
class Target:
    """One goal (docs/design.md, "Targets"), with the measured value and whether it was met."""

    name: str
    measured: float
    goal: str
    met: bool


@dataclass
class Report:
    """The result of one benchmark run."""

    name: str
    quick: bool
    rows: list[dict[str, Any]] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: figures for ``--json`` that the notes already say in words (not drawn as a table)
    details: dict[str, Any] = field(default_factory=dict)
    measured_at: str = field(
        default_factory=lambda: _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    )
    machine: dict[str, Any] = field(default_factory=lambda: machine_info())

    def target(self, name: str, measured: float, goal: str, met: bool) -> None:
        """Record a target and whether ``measured`` meets it."""
        self.targets.append(Target(name, float(measured), goal, bool(met)))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able view for ``--json``."""
        return asdict(self)


def machine_info() -> dict[str, Any]:
    """Enough about the machine to compare figures across runs."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }


class BaselineMissing(ProjectOError):
    """A benchmark's baseline is not installed; the message holds the command that installs it."""
