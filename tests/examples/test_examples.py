"""The examples' tasks run in the sandboxed evaluators, and a tiny GA improves on the seeds."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from typing import Any

import pytest

from project_o.evolution.genetic import GAConfig, GeneticAlgorithm
from project_o.evolution.genome import Genome
from project_o.evolution.population import EvaluatorPool

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
TINY = GAConfig(population=8, generations=2, tournament=3, elitism=1, seed=0)


@pytest.mark.parametrize("name", ["symbolic_regression", "function_minimization",
                                  "circle_packing"])
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


def _circle_task() -> Any:
    spec = importlib.util.spec_from_file_location("circle_task", EXAMPLES / "circle_packing"
                                                  / "task.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_circle_packing_validity_has_zero_tolerance() -> None:
    task = _circle_task()
    # circles of radius 1/16 on an 8 x 8 grid, touching: binary fractions, so exact floats
    grid = [((2 * c + 1) / 16, (2 * r + 1) / 16, 1 / 16) for r in range(8) for c in range(8)]
    circles = grid[:26]
    assert task.problems(circles) == []
    x, y, radius = circles[0]
    bumped = [(x, y, math.nextafter(radius, 1.0)), *circles[1:]]  # one ulp too big
    assert task.problems(bumped), "a circle one ulp past the wall or its neighbour passed"
    overlapping = [*circles[:-1], (circles[0][0], circles[0][1], 1e-9)]
    assert any("overlap" in p for p in task.problems(overlapping))
    outside = [*circles[:-1], (1.0, 0.5, 1e-9)]
    assert any("leaves the square" in p for p in task.problems(outside))
    assert task.problems(circles[:25]) == ["25 circles, expected 26"]
    assert task.problems([*circles[:-1], (0.5, 0.5, math.nan)])


def test_circle_packing_seed_packs_26_valid_circles_and_a_tiny_ga_keeps_it_valid() -> None:
    seed = Genome.from_path(EXAMPLES / "circle_packing" / "agent.py")
    tiny = GAConfig(population=4, generations=1, tournament=2, elitism=1, seed=0)
    with EvaluatorPool(EXAMPLES / "circle_packing" / "task.py", workers=2) as pool:
        seeded = pool.evaluate([seed])[seed.id]
        result = GeneticAlgorithm(seed, pool.evaluate, tiny).run()
    assert seeded.ok and seeded.metrics["valid"] is True, seeded
    assert 2.0 < seeded.fitness < 2.7  # far above trivial layouts, below the known optimum
    assert result.evaluation.metrics["valid"] is True
    assert result.evaluation.fitness >= seeded.fitness


def test_route_planner_is_a_package_whose_task_checks_every_tour() -> None:
    readme = (EXAMPLES / "route_planner" / "README.md").read_text()
    assert ("project-o evolve --agent examples/route_planner/planner "
            "--task examples/route_planner/task.py") in readme
    seed = Genome.from_path(EXAMPLES / "route_planner" / "planner")
    sources = dict(seed.sources)
    sources["construct.py"] = sources["construct.py"].replace(
        "for i in range(n)]", "for i in range(n - 1)]")  # forgets a city
    skipping = seed.derive(operator="test", sources=sources)
    with EvaluatorPool(EXAMPLES / "route_planner" / "task.py", workers=2) as pool:
        results = pool.evaluate([seed, skipping])
    assert seed.is_package and results[seed.id].ok
    assert -11.3 < results[seed.id].fitness < -11.2  # cities in the order given
    failure = results[skipping.id].failure
    assert failure is not None and "not a tour of all 20 cities" in failure["reason"]
