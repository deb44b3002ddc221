"""Resume after kill -9 of the whole run equals an uninterrupted run with the same seed."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "symbolic_regression"
GENERATIONS = 6

# The example's task, slowed so that a generation takes a noticeable moment.
SLOW_TASK = f'''
import sys, time
sys.path.insert(0, {str(EXAMPLE)!r})
from task import SCORE_BOUNDS, evaluate as _evaluate

def evaluate(agent):
    time.sleep(0.01)
    return _evaluate(agent)
'''


def _command(task: Path, run_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "project_o.evolution.evolve_cli", "--agent",
            str(EXAMPLE / "agent.py"), "--task", str(task), "--population", "16",
            "--generations", str(GENERATIONS), "--tournament", "3", "--elitism", "2",
            "--seed", "11", "--workers", "2", "--run-dir", str(run_dir), "--json", *extra]


def _run(command: list[str]) -> dict[str, object]:
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def _kill_at_generation(command: list[str], generation: int) -> None:
    """Start the run in its own process group; SIGKILL the group once ``generation`` is done."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    assert process.stderr is not None
    for line in process.stderr:
        if line.startswith(f"gen {generation:>3}"):
            break
    assert process.poll() is None, "the run ended before it could be killed"
    os.killpg(process.pid, signal.SIGKILL)  # the run, its zygote and every evaluator
    process.wait()
    process.stderr.close()


@pytest.mark.slow
def test_resume_after_kill_equals_uninterrupted(tmp_path: Path) -> None:
    task = tmp_path / "task.py"
    task.write_text(SLOW_TASK)
    whole = _run(_command(task, tmp_path / "whole"))
    generation = random.Random(os.getpid()).randrange(GENERATIONS - 1)
    _kill_at_generation(_command(task, tmp_path / "killed"), generation)
    resumed = _run(_command(task, tmp_path / "killed", "--resume"))

    assert resumed["winner"] == whole["winner"]
    assert resumed["score"] == whole["score"]
    assert resumed["run_id"] != whole["run_id"]
    assert [h["best"] for h in resumed["history"]] == [h["best"] for h in whole["history"]]
    # Nothing that finished was evaluated twice.
    catalog = tmp_path / "killed" / "VAULT" / "catalog.sqlite"
    with sqlite3.connect(catalog) as conn:
        twice = conn.execute("SELECT version_id FROM evaluations GROUP BY version_id"
                             " HAVING COUNT(*) > 1").fetchall()
        total = conn.execute("SELECT COUNT(*) FROM evaluations").fetchone()[0]
    assert twice == []
    assert total == resumed["evaluations"] == whole["evaluations"]


def test_resume_without_a_run_is_refused(tmp_path: Path) -> None:
    done = subprocess.run(_command(EXAMPLE / "task.py", tmp_path / "empty", "--resume"),
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2 and "no run to resume" in done.stderr
