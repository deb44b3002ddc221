"""Evaluator pool: misbehaving candidates are charged alone; the rest get exact results."""

from __future__ import annotations

import math
import os
from collections import Counter
from pathlib import Path

import pytest

from project_o.evolution.genome import Genome
from project_o.evolution.population import STREAM_BATCH, EvaluatorPool
from project_o.evolution.task import validate_metrics

AGENT = '''
import os, signal, time
from project_o import Agent

agent = Agent("misbehaving")
MODE = agent.param("mode", "ok", choices=["ok", "exit", "segv", "stuck", "spin", "burn",
                                          "bomb", "nan", "inf", "text", "raise", "print"])
VALUE = agent.param("value", 0, low=0, high=1000)


@agent.evolvable
def act(mode, value):
    if mode == "exit":
        os._exit(3)
    if mode == "segv":
        os.kill(os.getpid(), signal.SIGSEGV)
    if mode == "stuck":  # the alarm cannot break this one: only SIGKILL ends it
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        time.sleep(60)
    if mode == "spin":
        while True:
            pass
    if mode == "burn":  # like a loop in C: the CPU limit or the wall backstop ends it
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        while True:
            pass
    if mode == "bomb":
        hoard = bytearray(4 << 30)
        return len(hoard)
    if mode == "raise":
        raise RuntimeError("candidate bug")
    if mode == "print":
        print("last words of", value)
        os._exit(9)
    return {"nan": math.nan, "inf": math.inf, "text": "1e9"}.get(mode, float(value))


@agent.handler
def handle(ctx, request):
    return act(ctx.params.mode, ctx.params.value)
'''.replace("import os,", "import math, os,")

TASK = '''
def evaluate(agent):
    return {"score": agent.function("act")(agent.params["mode"], agent.params["value"]),
            "extra": 1}
'''

BAD = {"exit": "crash", "segv": "crash", "stuck": "timeout", "spin": "timeout",
       "burn": "timeout", "bomb": "memory", "nan": "gamed", "inf": "gamed", "text": "gamed", "raise": "error",
       "print": "crash"}


@pytest.fixture
def task(tmp_path: Path) -> Path:
    path = tmp_path / "task.py"
    path.write_text(TASK)
    return path


def _population() -> list[Genome]:
    genomes = [Genome({"agent.py": AGENT}, {"value": v}) for v in range(1, 7)]
    # interleaved, so every bad member has good ones before and after it in its batch
    for i, mode in enumerate(BAD):
        genomes.insert(2 * i + 1, Genome({"agent.py": AGENT}, {"mode": mode, "value": 500}))
    return genomes


@pytest.mark.parametrize("batch_size", [None, 1])
def test_bad_members_cost_only_themselves(task: Path, batch_size: int | None) -> None:
    genomes = _population()
    with EvaluatorPool(task, workers=2, timeout_s=1.0, memory_mb=768,
                       batch_size=batch_size or len(genomes)) as pool:
        results = pool.evaluate(genomes)
    assert set(results) == {g.id for g in genomes}
    for genome in genomes:
        result = results[genome.id]
        mode = genome.params.get("mode", "ok")
        if mode == "ok":
            assert result.ok and result.metrics["score"] == float(genome.params["value"])
            assert result.metrics["extra"] == 1 and result.metrics["time_s"] >= 0
            assert result.metrics["memory_kb"] > 0
        else:
            assert result.kind == BAD[mode], (mode, result.failure)
            assert result.fitness == -math.inf
    by_mode = {g.params.get("mode"): results[g.id].failure for g in genomes}
    assert by_mode["segv"]["signal"] == 11
    assert by_mode["exit"]["exit_code"] == 3
    assert "last words of 500" in by_mode["print"]["output"]
    assert "RuntimeError: candidate bug" in by_mode["raise"]["traceback"]


def test_batch_progress_and_durability_hooks(task: Path) -> None:
    genomes = [Genome({"agent.py": AGENT}, {"value": v}) for v in range(1, 9)]
    seen: list[str] = []
    progress: list[tuple[int, int]] = []
    with EvaluatorPool(task, workers=2, batch_size=3) as pool:
        results = pool.evaluate(genomes + genomes[:2],  # duplicates evaluated once
                                on_batch=lambda gs, es: seen.extend(e.genome_id for e in es),
                                on_progress=lambda d, t: progress.append((d, t)))
    assert sorted(seen) == sorted(results) == sorted(g.id for g in genomes)
    assert progress[-1] == (8, 8)


BURNER = '''
import time
from project_o import Agent

agent = Agent("burner")


@agent.evolvable
def burn(seconds):
    start = time.process_time()
    while time.process_time() - start < seconds:
        pass
    return seconds


@agent.handler
def handle(ctx, request):
    return burn(0.0)
'''


def test_cpu_seconds_counts_the_evaluators_work(tmp_path: Path) -> None:
    # The children run in the sandbox's PID namespace, under a zygote that is not the
    # process the pool started: their CPU time must still be counted once they are reaped.
    task = tmp_path / "task.py"
    task.write_text("def evaluate(agent):\n"
                    "    return {'score': agent.function('burn')(0.25)}\n")
    genomes = [Genome({"agent.py": BURNER.replace("burner", f"burner{i}")}) for i in range(4)]
    with EvaluatorPool(task, workers=2, batch_size=1) as pool:
        before = pool.cpu_seconds()
        results = pool.evaluate(genomes)
        assert all(r.ok for r in results.values())
        # the zygote reports each exit after reaping the child: its times are in by now
        spent = pool.cpu_seconds()
    assert before is not None and spent is not None
    assert spent - before >= 4 * 0.25 * 0.9  # each child burnt 0.25 s of its own CPU


def test_a_task_that_fails_to_import_is_reported(tmp_path: Path) -> None:
    bad = tmp_path / "task.py"
    bad.write_text("raise SystemError('broken task')\n")
    with pytest.raises(ValueError, match="broken task"):
        EvaluatorPool(bad).start()


@pytest.mark.parametrize("metrics, reason", [
    ({"score": math.nan}, "finite"), ({"score": -math.inf}, "finite"),
    ({"score": "3"}, "number"), ({"score": True}, "number"), ({"loss": 1.0}, "number"),
    ("not a dict", "dict"), ({"score": 5.0}, "outside"),
])
def test_gaming_scores_are_caught(metrics: object, reason: str) -> None:
    result = validate_metrics("x", {"metrics": metrics}, (-1.0, 1.0))
    assert result.kind == "gamed" and reason in result.failure["reason"]  # type: ignore[index]


@pytest.mark.parametrize("batch_size", [None, 2])
def test_a_stream_charges_bad_members_as_a_batch_does(task: Path, batch_size: int | None) -> None:
    genomes = _population()
    recorded: list[str] = []
    with EvaluatorPool(task, workers=2, timeout_s=1.0, memory_mb=768,
                       batch_size=batch_size) as pool:
        stream = pool.stream()
        results = {}
        for part in (genomes[:7], genomes[7:] + genomes[:3]):  # two generations; a repeat
            for genome in part:                               # is evaluated once
                stream.submit(genome)
            results.update(stream.results(
                on_batch=lambda gs, es: recorded.extend(g.id for g in gs)))
        stream.close()
    assert sorted(results) == sorted(recorded) == sorted(g.id for g in genomes)
    for genome in genomes:
        mode = genome.params.get("mode", "ok")
        if mode == "ok":
            assert results[genome.id].metrics["score"] == float(genome.params["value"])
        else:
            assert results[genome.id].kind == BAD[mode], (mode, results[genome.id].failure)


def test_a_stream_closed_mid_candidate_leaves_the_pool_usable(task: Path) -> None:
    genomes = [Genome({"agent.py": AGENT}, {"value": v}) for v in range(1, 5)]
    with EvaluatorPool(task, workers=2) as pool:
        stream = pool.stream()
        stream.submit(Genome({"agent.py": AGENT}, {"mode": "stuck"}))
        stream.close()  # kills the child running it
        results = pool.evaluate(genomes)
    assert [results[g.id].metrics["score"] for g in genomes] == [1.0, 2.0, 3.0, 4.0]


@pytest.mark.parametrize("batch_size", [None, 64])
def test_a_streamed_child_runs_at_most_a_batch(tmp_path: Path, batch_size: int | None) -> None:
    """A streamed child takes ``batch_size`` (else STREAM_BATCH) candidates, then a fresh one."""
    task = tmp_path / "task.py"
    task.write_text("import os\n\ndef evaluate(agent):\n"
                    "    return {'score': float(agent.params['value']), 'pid': os.getpid()}\n")
    bound = batch_size or STREAM_BATCH
    genomes = [Genome({"agent.py": AGENT}, {"value": v}) for v in range(bound + 10)]
    with EvaluatorPool(task, workers=1, batch_size=batch_size) as pool:
        stream = pool.stream()
        for genome in genomes:
            stream.submit(genome)
        results = stream.results()
        stream.close()
    assert [results[g.id].metrics["score"] for g in genomes] == [float(v) for v in range(bound + 10)]
    children = Counter(results[g.id].metrics["pid"] for g in genomes)
    # in submission order: the first child is filled to the bound, the rest go to the next
    assert list(children.values()) == [bound, 10]


@pytest.mark.parametrize("workers", [None, 2])
def test_a_stream_leaves_a_core_to_its_caller_unless_told(tmp_path: Path,
                                                          workers: int | None) -> None:
    task = tmp_path / "task.py"
    task.write_text("import os\n\ndef evaluate(agent):\n"
                    "    return {'score': float(agent.params['value']), 'pid': os.getpid()}\n")
    with EvaluatorPool(task, workers=workers) as pool:
        expected = workers or max(1, (os.cpu_count() or 1) - 1)
        assert pool.stream_workers == expected
        assert pool.workers == (workers or os.cpu_count())  # lists still use every core
        stream = pool.stream()
        for value in range(12):
            stream.submit(Genome({"agent.py": AGENT}, {"value": value}))
        results = stream.results()
        stream.close()
    children = {evaluation.metrics["pid"] for evaluation in results.values()}
    assert len(results) == 12 and 1 <= len(children) <= expected
    if workers is not None:
        assert len(children) == workers  # the candidates were spread over the children
