"""Islands, archives, novelty, the bandit and cascades resume exactly after kill -9.

A real ``evolve`` process (its zygote and evaluators in its process group) is
SIGKILLed at random moments, resumed, killed again, resumed to the end; the
result must equal an uninterrupted run's in everything but wall time:
winner, history, each island's population and best, the archives' cells,
every migration, the counters, the operator bandit's counts, the cascade
stages reached.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.evolution.search_task import search_task

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "symbolic_regression"
GENERATIONS = 8
#: the search options under test: population islands, and MAP-Elites islands
MODES = {
    "islands": ["--islands", "3", "--migration-interval", "2", "--migration-rate", "0.2",
                "--novelty", "0.9", "--bandit"],
    "map-elites": ["--islands", "2", "--migration-interval", "3", "--archive", "map-elites",
                   "--features", "size,mse", "--bins", "4", "--novelty", "0.95", "--bandit"],
}
#: how many times a run is killed before it is let finish
KILLS = 2


def _command(task: Path, run_dir: Path, mode: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "project_o.evolution.evolve_cli", "--agent",
            str(EXAMPLE / "agent.py"), "--task", str(task), "--population", "12",
            "--generations", str(GENERATIONS), "--tournament", "3", "--elitism", "2",
            "--seed", "3", "--workers", "2", "--batch-size", "2", "--run-dir", str(run_dir),
            "--json", *MODES[mode], *extra]


def _run(command: list[str]) -> dict[str, Any]:
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode in (0, 1), done.stderr[-3000:]
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def _kill_somewhere(command: list[str], rng: random.Random) -> bool:
    """SIGKILL the run's group after a random number of generations and a random moment.

    False if the run finished first (it was resumed past the last generation).
    """
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    assert process.stderr is not None
    wanted, seen = rng.randrange(3), 0
    for line in process.stderr:
        seen += line.startswith("gen ")
        if seen > wanted:
            break
    # Into the next generation: somewhere among its evaluations, or between them.
    time.sleep(rng.uniform(0.0, 0.3))
    finished = process.poll() is not None
    if not finished:
        os.killpg(process.pid, signal.SIGKILL)  # the run, its zygote and every evaluator
    process.wait()
    process.stderr.close()
    return not finished


def _comparable(result: dict[str, Any]) -> dict[str, Any]:
    """Everything but wall time and the run's own id."""
    history = [{k: v for k, v in row.items() if k != "seconds"} for row in result["history"]]
    return {**{k: v for k, v in result.items() if k not in ("history", "run_id", "run_dir",
                                                          "metrics")},
            "history": history,
            "metrics": {k: v for k, v in result["metrics"].items()
                        if k not in ("time_s", "cpu_s", "memory_kb")}}


@pytest.mark.slow
@pytest.mark.parametrize("mode", sorted(MODES))
def test_resume_after_random_kills_equals_uninterrupted(tmp_path: Path, mode: str) -> None:
    task = search_task(tmp_path, slow_s=0.01, staged=True)
    whole = _run(_command(task, tmp_path / "whole", mode))
    rng = random.Random(os.getpid())
    killed = tmp_path / "killed"
    kills = sum(_kill_somewhere(_command(task, killed, mode, *(["--resume"] if i else [])), rng)
                for i in range(KILLS))
    assert kills >= 1, "the run finished before any kill"
    resumed = _run(_command(task, killed, mode, "--resume"))

    assert _comparable(resumed) == _comparable(whole)
    assert resumed["bandit"] is not None and resumed["bandit"] == whole["bandit"]
    assert sum(s + f for s, f in whole["bandit"]["arms"].values()) > 0
    stages = {stage for row in whole["history"] for stage in row["stages"]}
    assert stages == {"1", "2"}  # the cascade stopped some candidates early
    if mode == "islands":
        assert whole["migrations"] and len(whole["islands"]) == 3
    else:
        assert all(len(cells) > 1 for cells in whole["archives"])
    # Nothing that finished was evaluated twice; every twin skipped is recorded once.
    with sqlite3.connect(killed / "VAULT" / "catalog.sqlite") as conn:
        twice = conn.execute("SELECT version_id FROM evaluations GROUP BY version_id"
                             " HAVING COUNT(*) > 1").fetchall()
        total = conn.execute("SELECT COUNT(*) FROM evaluations").fetchone()[0]
        twins = conn.execute("SELECT COUNT(*) FROM events WHERE kind = 'evolution_duplicate'"
                             ).fetchone()[0]
    assert twice == []
    assert total == resumed["evaluations"] == whole["evaluations"]
    counters = whole["counters"]
    assert twins == counters.get("duplicates", 0) + counters.get("near_duplicates", 0) > 0


def test_resume_with_other_search_options_is_refused(tmp_path: Path) -> None:
    base = [sys.executable, "-m", "project_o.evolution.evolve_cli", "--agent",
            str(EXAMPLE / "agent.py"), "--task", str(EXAMPLE / "task.py"), "--population", "6",
            "--generations", "1", "--tournament", "2", "--elitism", "1", "--workers", "2",
            "--run-dir", str(tmp_path), "--islands", "2"]
    first = subprocess.run(base, capture_output=True, text=True, timeout=120, check=False)
    assert first.returncode in (0, 1), first.stderr[-2000:]
    other = subprocess.run([*base, "--islands", "3", "--resume"], capture_output=True,
                           text=True, timeout=120, check=False)
    assert other.returncode == 2 and "same agent and options" in other.stdout + other.stderr
    same = subprocess.run([*base, "--resume"], capture_output=True, text=True, timeout=120,
                          check=False)
    assert same.returncode in (0, 1), same.stderr[-2000:]
