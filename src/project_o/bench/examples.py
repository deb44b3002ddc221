"""The ``examples/`` of a source checkout, found and evolved for benchmarks."""

from __future__ import annotations

import tempfile
from pathlib import Path

from project_o.evolution.genetic import GAConfig, GAResult, GeneticAlgorithm
from project_o.evolution.genome import Genome
from project_o.evolution.population import EvaluatorPool
from project_o.evolution.run_store import RunStore

__all__ = ["evolve_example", "example_dir"]


def example_dir(name: str) -> Path:
    """``examples/NAME`` above the installed package or under the working directory.

    Raises :class:`FileNotFoundError` outside a source checkout.
    """
    here = Path(__file__).resolve()
    for root in (*here.parents, Path.cwd()):
        candidate = root / "examples" / name
        if (candidate / "agent.py").is_file():
            return candidate
    raise FileNotFoundError(f"examples/{name} not found; run from a source checkout")


def evolve_example(example: Path, config: GAConfig, pool: EvaluatorPool) -> GAResult:
    """One durable GA run on ``example/agent.py`` (its run store in a temporary directory)."""
    with tempfile.TemporaryDirectory(prefix=f"{example.name}-run-") as run_dir:
        store = RunStore(run_dir)
        try:
            return GeneticAlgorithm(Genome.from_path(example / "agent.py"), pool.evaluate,
                                    config, store=store).run()
        finally:
            store.close()
