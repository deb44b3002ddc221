"""The Ray backend gives what the local backend gives, on a real local Ray cluster."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray

from project_o.evolution.backends import EvaluationBackend, SubprocessBackend
from project_o.evolution.ray_backend import RayBackend, start_local_cluster
from tests.evolution.test_backends import BODIES, TASK, candidate

#: a good member with its own params, and one of each failure kind
MEMBERS = ["good", "raise", "exit", "segfault", "hang", "nan", "chatty_kill"]


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    # ray.init installs its own SIGTERM/SIGINT handlers in this (the pytest)
    # process; put ours back so later tests see the process as it was.
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    start_local_cluster(num_cpus=2)
    try:
        yield
    finally:
        ray.shutdown()
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def test_ray_and_local_backends_agree(cluster: None, tmp_path: Path) -> None:
    task = tmp_path / "task.py"
    task.write_text(TASK)
    genomes = [candidate(BODIES[name]) for name in MEMBERS]
    genomes.append(candidate(BODIES["good"], {"threshold": 0.75}))
    local = SubprocessBackend(workers=2).evaluate(genomes, task, timeout_s=3, memory_mb=768)
    backend = RayBackend()
    assert isinstance(backend, EvaluationBackend)
    remote = backend.evaluate(genomes, task, timeout_s=3, memory_mb=768)
    backend.close()  # joined, not started, by this backend: the cluster stays up
    assert ray.is_initialized()
    assert [r.genome_id for r in remote] == [g.id for g in genomes]
    assert [r.kind for r in remote] == [r.kind for r in local]
    assert [r.kind for r in remote] == ["ok", "exception", "crash", "signal", "hang", "gamed",
                                        "signal", "ok"]
    assert [r.metrics for r in remote] == [r.metrics for r in local]
    assert remote[-1].metrics == {"score": 0.75, "echo": 3}
    details = [(r.failure or {}).get("detail") for r in remote]
    assert details == [(r.failure or {}).get("detail") for r in local]


def test_genetic_algorithm_on_ray_equals_the_local_run(cluster: None) -> None:
    from project_o.evolution.genetic import GAConfig, GeneticAlgorithm
    from project_o.evolution.genome import Genome
    from project_o.evolution.population import EvaluatorPool
    from project_o.evolution.ray_population import RayPopulation

    example = Path(__file__).resolve().parents[2] / "examples" / "symbolic_regression"
    config = GAConfig(population=12, generations=3, tournament=3, elitism=2, seed=7)
    seed = Genome.from_path(example / "agent.py")
    with EvaluatorPool(example / "task.py", workers=2) as pool:
        local = GeneticAlgorithm(seed, pool.evaluate, config).run()
    with RayPopulation(example / "task.py", timeout_s=10, memory_mb=1024) as remote:
        on_ray = GeneticAlgorithm(seed, remote.evaluate, config).run()
    assert on_ray.winner.id == local.winner.id
    assert on_ray.evaluation.fitness == local.evaluation.fitness
    assert [g.id for g in on_ray.population] == [g.id for g in local.population]
