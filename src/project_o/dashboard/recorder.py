"""Each running experiment's statistics over time, kept beside the catalog.

The evolution control keeps an experiment's final statistics; how its confidence
sequence narrowed on the way is what the dashboard samples once a second
while it runs. The samples go to ``VAULT/dashboard/experiments/ID.jsonl``
(one JSON line each, appended, not fsynced: a lost tail after a crash
loses a second of a chart, nothing else), so an experiment nobody watched
live still has its chart later and in ``project-o report``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Final

__all__ = ["MAX_LOADED", "append_point", "load_points", "points_path"]

#: points handed to a page: longer histories are thinned evenly to this many
MAX_LOADED: Final = 600
_SAFE_ID: Final = re.compile(r"[A-Za-z0-9_.-]+")


def points_path(vault: Path, experiment_id: str) -> Path | None:
    """Where ``experiment_id``'s points live, or None for an id unsafe as a file name."""
    if not _SAFE_ID.fullmatch(experiment_id) or experiment_id.startswith("."):
        return None
    return vault / "dashboard" / "experiments" / f"{experiment_id}.jsonl"


def append_point(vault: Path, experiment_id: str, point: dict[str, Any]) -> None:
    """Add one sample to the experiment's file."""
    path = points_path(vault, experiment_id)
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as stream:
        stream.write(json.dumps(point, separators=(",", ":"), default=str) + "\n")


def load_points(vault: Path, experiment_id: str) -> list[dict[str, Any]]:
    """The experiment's samples, oldest first, thinned to at most :data:`MAX_LOADED`."""
    path = points_path(vault, experiment_id)
    if path is None or not path.is_file():
        return []
    points = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            points.append(json.loads(line))
        except ValueError:
            continue  # the torn last line of a crash
    if len(points) <= MAX_LOADED:
        return points
    step = len(points) / MAX_LOADED
    return [points[int(i * step)] for i in range(MAX_LOADED - 1)] + [points[-1]]
