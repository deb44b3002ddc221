"""MAP-Elites: the archive keeps the best per cell, fills cells, and parents come from it."""

from __future__ import annotations

import itertools
import random
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from project_o.errors import InvalidArgument
from project_o.evolution.archive import MapElites
from project_o.evolution.genetic import GAConfig, GeneticAlgorithm
from project_o.evolution.genome import Genome
from project_o.evolution.population import EvaluatorPool
from project_o.evolution.run_store import RunStore
from project_o.evolution.task import Evaluation
from tests.evolution.search_task import EXAMPLE, knobs

GRID = GAConfig(population=10, generations=4, tournament=3, elitism=1, seed=6, crossover=0.0,
                archive="map-elites", features=("threshold", "top_k"), bins=4)


def _ok(gid: str, score: float, **features: float) -> Evaluation:
    return Evaluation(gid, {"score": score, **features})


def test_the_best_of_each_cell_is_kept_whatever_the_order() -> None:
    rows = [("a", 1.0, 0.0), ("b", 3.0, 0.1), ("c", 2.0, 9.9), ("d", 5.0, 10.0),
            ("e", 3.0, 0.05), ("f", 0.0, 5.0)]
    archives = []
    for order in (rows, rows[::-1], sorted(rows, key=lambda r: r[1])):
        archive = MapElites(["x"], 2)
        for gid, score, x in order:
            archive.insert(gid, _ok(gid, score, x=x))
        archives.append(archive)
    # range [0, 10] in two bins: [0, 5) holds a, b, e (b and e tie: the smaller id wins)
    assert archives[0].cells() == {"0": "b", "1": "d"}
    assert all(a.cells() == archives[0].cells() for a in archives)
    assert archives[0].elites() == ["d", "b"]


def test_failures_and_candidates_without_the_features_are_not_placed() -> None:
    archive = MapElites(["x", "y"], 3)
    assert not archive.insert("fail", Evaluation("fail", {"x": 1.0, "y": 1.0}, {"kind": "crash"}))
    assert not archive.insert("half", _ok("half", 1.0, x=1.0))
    assert not archive.insert("text", Evaluation("text", {"score": 1.0, "x": "1", "y": 2.0}))
    assert archive.insert("ok", _ok("ok", 1.0, x=1.0, y=2.0)) and len(archive) == 1
    assert "ok" in archive and "half" not in archive


def test_state_round_trips_and_sampling_covers_the_occupied_cells() -> None:
    archive = MapElites(["x", "y"], 4)
    rng = random.Random(1)
    for i in range(200):
        archive.insert(f"g{i:03}", _ok(f"g{i:03}", rng.random(), x=rng.random(),
                                       y=rng.random() * 3))
    copy = MapElites.load(archive.state())
    assert copy.cells() == archive.cells() and copy.state() == archive.state()
    assert 8 < len(archive) <= 16
    sampler = random.Random(2)
    draws = Counter(archive.sample(sampler) for _ in range(4000))
    assert set(draws) == set(archive.cells().values())
    assert max(draws.values()) < 2 * min(draws.values())  # uniform over cells: ~4000/len each
    assert [copy.sample(random.Random(3)) for _ in range(20)] == \
        [archive.sample(random.Random(3)) for _ in range(20)]
    with pytest.raises(InvalidArgument, match="empty"):
        MapElites(["x"], 3).sample(random.Random(0))


def test_bad_archive_options_are_refused() -> None:
    for bad in ({"archive": "map-elites"}, {"archive": "map-elites", "features": ("a", "a")},
                {"archive": "map-elites", "features": ("a",), "bins": 0},
                {"archive": "grid", "features": ("a",)}, {"features": ("a",)},
                {"archive": "map-elites", "features": ("a",), "multi_objective": True}):
        with pytest.raises(InvalidArgument):
            GAConfig(**bad)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return knobs(tmp_path_factory.mktemp("knobs"))


@pytest.fixture(scope="module")
def pool(files: tuple[Path, Path]) -> Iterator[EvaluatorPool]:
    with EvaluatorPool(files[1], workers=2) as started:
        yield started


def test_the_archive_fills_cells_and_parents_come_from_it(
        pool: EvaluatorPool, files: tuple[Path, Path], tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    seed = Genome.from_path(files[0])
    result = GeneticAlgorithm(seed, pool.evaluate, GRID, store=store).run()
    states = store.generations(result.run_id)
    scores = {i: e.fitness for i, e in store.evaluations(result.run_id).items()}
    cells = [len(s.islands[0]["archive"]["members"]) for s in states]
    assert cells[-1] > 2 and result.history[-1].islands[0]["cells"] == cells[-1]
    assert result.archives[0] and set(result.archives[0].values()) == set(
        states[-1].islands[0]["archive"]["members"])
    seen = set(states[0].population)
    for before, after in itertools.pairwise(states):
        elites = set(before.islands[0]["archive"]["members"])
        for genome_id in set(after.population) - seen:  # first made in this generation
            # No crossover: each offspring is a mutant of an elite (the catalog keeps the
            # lineage a version was first recorded with).
            assert store.genome(genome_id).parents[0] in elites, genome_id
        seen |= set(after.population)
    best = max(scores, key=scores.__getitem__)
    assert result.evaluation.fitness == scores[best]
    store.close()


def test_features_need_an_archive_on_the_command_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "project_o.evolution.evolve_cli", "--agent",
         str(EXAMPLE / "agent.py"), "--task", str(EXAMPLE / "task.py"), "--features", "mse",
         "--run-dir", str(tmp_path)], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2 and "--archive map-elites" in done.stdout + done.stderr


def test_features_the_task_never_returns_stop_the_run_with_a_clear_error(
        pool: EvaluatorPool, files: tuple[Path, Path]) -> None:
    config = GAConfig(population=4, generations=2, tournament=2, elitism=1,
                      archive="map-elites", features=("threshold", "latency"), bins=3)
    seed = Genome.from_path(files[0])
    with pytest.raises(InvalidArgument, match=r"no candidate has the features.*latency"):
        GeneticAlgorithm(seed, pool.evaluate, config).run()
