"""Evaluating on Ray gives what evaluating locally gives, on a real local Ray cluster.

One cluster for the module (two CPUs, 127.0.0.1 only); every RayPopulation
here joins it, so closing one leaves the cluster up for the next test.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray

from project_o.cli import main as cli
from project_o.errors import InvalidArgument
from project_o.evolution.adversarial import AdversarialConfig, run_adversarial
from project_o.evolution.genetic import GAConfig, GeneticAlgorithm
from project_o.evolution.genome import Genome
from project_o.evolution.population import EvaluatorPool
from project_o.evolution.ray_population import RayPopulation, start_local_cluster
from project_o.evolution.referee import local_evaluators
from tests.evolution.test_population import AGENT, BAD, TASK

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
#: one member of each failure kind the pool tells apart, and good members around them
MODES = ["raise", "exit", "segv", "spin", "nan", "print"]


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


def test_ray_and_local_evaluations_agree(cluster: None, tmp_path: Path) -> None:
    task = tmp_path / "task.py"
    task.write_text(TASK)
    genomes = [Genome({"agent.py": AGENT}, {"value": v}) for v in (3, 7)]
    genomes += [Genome({"agent.py": AGENT}, {"mode": m, "value": 500}) for m in MODES]
    with EvaluatorPool(task, workers=2, timeout_s=1.0, memory_mb=768) as pool:
        local = pool.evaluate(genomes)
    with RayPopulation(task, timeout_s=1.0, memory_mb=768) as population:
        remote = population.evaluate(genomes)
    assert ray.is_initialized()  # joined, not started, by that population: still up
    assert set(remote) == set(local) == {g.id for g in genomes}
    kinds = [remote[g.id].kind for g in genomes]
    assert kinds == ["ok", "ok"] + [BAD[m] for m in MODES]
    assert kinds == [local[g.id].kind for g in genomes]
    for genome in genomes:
        mine, theirs = remote[genome.id], local[genome.id]
        assert mine.fitness == theirs.fitness
        assert (mine.failure or {}).get("reason") == (theirs.failure or {}).get("reason")
    assert remote[genomes[1].id].metrics["score"] == 7.0


def test_data_files_travel_with_each_evaluation(cluster: None, tmp_path: Path) -> None:
    task = tmp_path / "task.py"
    task.write_text("from pathlib import Path\n\n\ndef evaluate(agent):\n"
                    "    return {'score': float(Path(__file__).with_name('level.txt')"
                    ".read_text())}\n")
    level = tmp_path / "level.txt"
    level.write_text("1")
    genome = Genome({"agent.py": AGENT})
    with RayPopulation(task, timeout_s=5, memory_mb=768, data_files=[level]) as population:
        first = population.evaluate([genome])[genome.id]
        level.write_text("2")  # read again at the next call, as it is then
        second = population.evaluate([genome])[genome.id]
    assert (first.fitness, second.fitness) == (1.0, 2.0)


def test_data_files_must_exist_and_not_shadow_the_task(tmp_path: Path) -> None:
    task = tmp_path / "task.py"
    task.write_text(TASK)
    other = tmp_path / "other"
    other.mkdir()
    (other / "task.py").write_text("")
    with pytest.raises(InvalidArgument, match="distinct"):
        RayPopulation(task, timeout_s=1, memory_mb=None, data_files=[other / "task.py"])
    with pytest.raises(InvalidArgument, match="exist"):
        RayPopulation(task, timeout_s=1, memory_mb=None, data_files=[tmp_path / "missing"])


def test_genetic_algorithm_on_ray_equals_the_local_run(cluster: None) -> None:
    example = EXAMPLES / "symbolic_regression"
    config = GAConfig(population=12, generations=3, tournament=3, elitism=2, seed=7)
    seed = Genome.from_path(example / "agent.py")
    with EvaluatorPool(example / "task.py", workers=2) as pool:
        local = GeneticAlgorithm(seed, pool.evaluate, config).run()
    with RayPopulation(example / "task.py", timeout_s=10, memory_mb=1024) as remote:
        on_ray = GeneticAlgorithm(seed, remote.evaluate, config).run()
    assert on_ray.winner.id == local.winner.id
    assert on_ray.evaluation.fitness == local.evaluation.fitness
    assert [g.id for g in on_ray.population] == [g.id for g in local.population]


def test_adversarial_cli_on_ray_equals_the_local_run(cluster: None, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    example = EXAMPLES / "red_blue"
    status = cli(["evolve", "--adversarial", "--agent", str(example / "agent.py"),
                  "--task", str(example / "task.py"), "--seed", "0", "--rounds", "3",
                  "--backend", "ray", "--vault", str(tmp_path / "ray"), "--json"])
    on_ray = json.loads(capsys.readouterr().out)
    local = run_adversarial(example / "agent.py", example / "task.py",
                            config=AdversarialConfig(seed=0, rounds=3),
                            vault=tmp_path / "local", evaluators=local_evaluators(workers=2))
    assert status == (0 if local.passes_all else 1)
    assert on_ray["findings"] == [f.to_dict() for f in local.findings]
    assert on_ray["findings"], "red found nothing: the comparison would be empty"
    assert on_ray["winner"] == local.winner.id and on_ray["rounds"] == local.rounds
    assert [_without_time(row) for row in on_ray["history"]] == \
        [_without_time(row) for row in local.history]


def _without_time(row: dict[str, object]) -> dict[str, object]:
    return {key: value for key, value in row.items() if key != "elapsed_s"}
