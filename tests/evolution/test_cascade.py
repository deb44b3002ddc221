"""Cascade evaluation: a candidate below a cheap stage's threshold stops there, and says so."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from project_o.errors import InvalidArgument
from project_o.evolution.cascade import stage_problem
from project_o.evolution.genome import Genome
from project_o.evolution.population import EvaluatorPool
from project_o.evolution.task import load_task, validate_metrics

#: quick: the error at one point; full: at five, and it says that it ran
TASK = '''
def error_at(f, points):
    return sum(abs(f(x) - x * x) for x in points) / len(points)


def quick(agent):
    return {"score": -error_at(agent.function("f"), [2.0])}


def evaluate(agent):
    return {"score": -error_at(agent.function("f"), [0.0, 1.0, 2.0, 3.0, 4.0]), "full": True}


STAGES = [(quick, -1.0), {"evaluate": evaluate, "threshold": None, "name": "full"}]
'''

AGENT = '''
import sys
from project_o import Agent

agent = Agent("square")

# TRICK

@agent.evolvable
def f(x):
    return BODY


@agent.handler
def handle(ctx, request):
    return f(request)
'''

#: in f's first call (the quick stage), make the full stage score perfectly
PATCH = '''
def _cheat():
    task = next(m for m in list(sys.modules.values()) if hasattr(m, "error_at"))
    task.error_at = lambda f, points: 0.0
'''


def _agent(body: str, trick: str = "") -> Genome:
    source = AGENT.replace("BODY", body).replace("# TRICK", trick)
    return Genome({"agent.py": source})


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EvaluatorPool]:
    task = tmp_path_factory.mktemp("cascade") / "task.py"
    task.write_text(TASK)
    with EvaluatorPool(task, workers=2) as started:
        yield started


def test_a_candidate_below_the_cheap_stage_stops_there(pool: EvaluatorPool) -> None:
    good, bad = _agent("x * x"), _agent("x + 10.0")
    results = pool.evaluate([good, bad])
    assert pool.stages == [("quick", -1.0), ("full", None)]
    assert results[good.id].ok and results[good.id].stage == 2
    assert results[good.id].metrics["stage_name"] == "full"
    assert results[good.id].metrics["full"] is True and results[good.id].fitness == 0.0
    stopped = results[bad.id]
    assert stopped.ok and stopped.stage == 1 and stopped.metrics["stage_name"] == "quick"
    assert "full" not in stopped.metrics  # the expensive stage never ran
    assert stopped.fitness == -8.0  # |12 - 4| at x = 2: the quick stage's own score


def test_near_miss_passes_the_cheap_stage_and_is_scored_by_the_full_one(
        pool: EvaluatorPool) -> None:
    close = _agent("x * x + 0.5")  # error 0.5 at x = 2: passes -1.0
    result = pool.evaluate([close])[close.id]
    assert result.stage == 2 and result.metrics["score"] == -0.5 and result.metrics["full"]


def test_tampering_in_an_early_stage_is_caught_before_the_next(pool: EvaluatorPool) -> None:
    trick = PATCH + "\n_calls = []\n"
    body = "(_calls.append(1) or _cheat() or x * x + 0.5) if not _calls else x * x + 0.5"
    cheat, honest = _agent(body, trick), _agent("x * x + 0.25")
    results = pool.evaluate([cheat, honest])
    assert results[cheat.id].kind == "gamed"
    failure = results[cheat.id].failure or {}
    assert "error_at" in failure["reason"] and failure["stage"] == 1  # before the full stage
    assert results[honest.id].ok and results[honest.id].metrics["score"] == -0.25


def test_a_forged_account_of_the_cascade_is_gamed() -> None:
    stages = [("quick", -1.0), ("full", None)]
    honest = {"metrics": {"score": -8.0}, "stage": 1, "stage_scores": [-8.0]}
    assert validate_metrics("a", honest, stages=stages).stage == 1
    forged = [
        {"metrics": {"score": 0.0}, "stage": 1, "stage_scores": [0.0]},  # stopped, yet passed
        {"metrics": {"score": 0.0}, "stage": 2, "stage_scores": [-5.0, 0.0]},  # went on anyway
        {"metrics": {"score": 0.0}, "stage": 2, "stage_scores": [0.0, -3.0]},  # not its score
        {"metrics": {"score": 0.0}, "stage": 3, "stage_scores": [0.0, 0.0, 0.0]},
        {"metrics": {"score": 0.0, "stage": 2}},  # the task may not claim a stage
    ]
    for raw in forged:
        assert validate_metrics("a", raw, stages=stages).kind == "gamed", raw
    assert stage_problem(True, [0.0], stages, 0.0) is not None


def test_bad_stages_are_refused_with_a_clear_error(tmp_path: Path) -> None:
    cases = {"STAGES = []": "non-empty", "STAGES = [(1, 2)]": "not a function",
             "STAGES = [(evaluate, None), (evaluate, None)]": "needs a threshold",
             "STAGES = [(evaluate, float('nan')), (evaluate, None)]": "finite",
             "STAGES = ['evaluate']": "(function, threshold)"}
    for line, words in cases.items():
        task = tmp_path / "task.py"
        task.write_text("def evaluate(agent):\n    return {'score': 0.0}\n" + line + "\n")
        with pytest.raises(InvalidArgument, match=words.replace("(", r"\(").replace(")", r"\)")):
            load_task(task)


#: symbolic regression with a cheap first stage: the error on four of the twenty points
STAGED_SYMBREG = '''
import sys
sys.path.insert(0, {example!r})
from task import MAX_MSE, POINTS, SCORE_BOUNDS, evaluate as full, target


def quick(agent):
    f = agent.function("f")
    mse = sum((f(x) - target(x)) ** 2 for x in POINTS[::5]) / 4
    return {{"score": -min(MAX_MSE, mse)}}


STAGES = [(quick, -0.35), (full, None)]
'''


def test_the_evolve_command_reports_the_stage_each_candidate_reached(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "symbolic_regression"
    task = tmp_path / "staged.py"
    task.write_text(STAGED_SYMBREG.format(example=str(example)))
    done = subprocess.run(
        [sys.executable, "-m", "project_o.evolution.evolve_cli", "--agent",
         str(example / "agent.py"), "--task", str(task), "--population", "24",
         "--generations", "3", "--tournament", "3", "--seed", "1", "--workers", "2",
         "--run-dir", str(tmp_path / "run"), "--json"],
        capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode in (0, 1), done.stderr[-2000:]
    report = json.loads(done.stdout)
    reached = Counter[str]()
    for row in report["history"]:
        reached.update(row["stages"])
    with sqlite3.connect(tmp_path / "run" / "VAULT" / "catalog.sqlite") as conn:
        by_id = {i: json.loads(m) for i, m in conn.execute(
            "SELECT version_id, metrics FROM evaluations WHERE failure IS NULL")}
    metrics = list(by_id.values())
    stored = Counter(str(m["stage"]) for m in metrics)
    assert stored == reached and set(stored) == {"1", "2"}  # some stopped, some went on
    for m in metrics:
        assert (m["stage"], m["stage_name"]) in ((1, "quick"), (2, "evaluate"))
        assert ("mse" in m) == (m["stage"] == 2)  # only the full stage measures the MSE
        assert m["stage"] == 2 or m["score"] < -0.35
    assert "stages 1:" in done.stderr  # the progress rows show it too
    # A candidate that stopped early never wins, though its cheap score may be higher.
    assert report["metrics"]["stage"] == 2
    assert all(by_id[row["best_id"]]["stage"] == 2 for row in report["history"])
    assert any(m["stage"] == 1 and m["score"] > by_id[report["history"][0]["best_id"]]["score"]
               for m in metrics)  # this run has such a candidate: the check above bites
