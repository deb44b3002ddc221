"""The benchmarks behind ``project-o bench NAME``.

Each benchmark is a module here with a ``run(quick, progress) -> Report``
function, registered by name in :data:`BENCHMARKS`. Figures are measured
against a baseline in the same run wherever one exists (SQLite for the
WAL, for example), so a ratio means something on any machine.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from project_o.bench.report import Report, Target

__all__ = ["BENCHMARKS", "Report", "Target", "load"]

#: benchmark name -> module that implements ``run(quick, progress)``
BENCHMARKS: dict[str, str] = {
    "wal": "project_o.bench.wal",
    "checkpoint": "project_o.bench.checkpoint",
    "recovery": "project_o.bench.recovery",
    "overhead": "project_o.bench.overhead",
    "memory": "project_o.bench.memory",
    "evolution-cycle": "project_o.bench.evolution_cycle",
    "symbreg": "project_o.bench.symbreg",
    "shadows": "project_o.bench.shadows",
    "fmin": "project_o.bench.function_minimization",
    "circle-packing": "project_o.bench.circle_packing",
    "isolation": "project_o.bench.isolation",
}


def load(name: str) -> Callable[[bool, Callable[[str], None]], Report]:
    """Return the ``run`` function of benchmark ``name``."""
    module = importlib.import_module(BENCHMARKS[name])
    run: Callable[[bool, Callable[[str], None]], Report] = module.run
    return run
