"""The examples' tasks run in the sandboxed evaluators, and a tiny GA improves on the seeds."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from project_o.evolution.genetic import GAConfig, GeneticAlgorithm
from project_o.evolution.genome import Genome
from project_o.evolution.population import EvaluatorPool

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TINY = GAConfig(population=8, generations=2, tournament=3, elitism=1, seed=0)


@pytest.mark.parametrize("name", ["symbolic_regression", "function_minimization"])
def test_readme_names_the_command(name: str) -> None:
    readme = (EXAMPLES / name / "README.md").read_text()
    assert (f"project-o evolve --agent examples/{name}/agent.py "
            f"--task examples/{name}/task.py") in readme


def test_symbolic_regression_scores_the_seed_exactly() -> None:
    seed = Genome.from_path(EXAMPLES / "symbolic_regression" / "agent.py")
    points = [x / 10.0 for x in range(-10, 10)]
    expected = sum((x**4 + x**3 + x**2) ** 2 for x in points) / len(points)  # f(x) = x
    with EvaluatorPool(EXAMPLES / "symbolic_regression" / "task.py", workers=2) as pool:
        seeded = pool.evaluate([seed])[seed.id]
        result = GeneticAlgorithm(seed, pool.evaluate, TINY).run()
    assert seeded.ok and math.isclose(seeded.metrics["mse"], expected)
    assert seeded.metrics["solved"] is False
    assert result.evaluation.fitness >= seeded.fitness


def test_function_minimization_reports_its_distance_to_the_minimum() -> None:
    seed = Genome.from_path(EXAMPLES / "function_minimization" / "agent.py")
    with EvaluatorPool(EXAMPLES / "function_minimization" / "task.py", workers=2) as pool:
        seeded = pool.evaluate([seed])[seed.id]
        result = GeneticAlgorithm(seed, pool.evaluate, TINY).run()
    metrics = result.evaluation.metrics
    assert seeded.ok and result.evaluation.fitness >= seeded.fitness
    assert metrics["best_value"] >= -1.52  # nothing below the known global minimum
    assert math.isclose(metrics["gap_to_minimum"], metrics["best_value"] + 1.519)
    assert metrics["distance_to_minimum"] >= 0
