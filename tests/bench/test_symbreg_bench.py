"""``project-o bench symbreg``: the baseline is required, and the report says where time went."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from project_o.bench import symbreg
from project_o.bench.examples import Timings, evolve_example, example_dir
from project_o.bench.report import BaselineMissing
from project_o.evolution.genetic import GAConfig
from project_o.evolution.population import EvaluatorPool

ROOT = Path(__file__).resolve().parents[2]


def _quiet(_: str) -> None:
    pass


def test_without_deap_the_bench_stops_first_with_the_command_that_installs_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "deap", None)  # `import deap` now raises ImportError

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("Project O's runs started although no comparison can be made")

    monkeypatch.setattr(symbreg, "evolve_example", never)
    with pytest.raises(BaselineMissing) as caught:
        symbreg.run(True, _quiet)
    assert symbreg.INSTALL_DEAP in str(caught.value)
    assert symbreg.INSTALL_DEAP == 'python3 -m pip install "deap>=1.4"'


def test_the_cli_exits_2_with_the_install_command_when_deap_is_missing(tmp_path: Path) -> None:
    blocker = tmp_path / "deap"
    blocker.mkdir()
    (blocker / "__init__.py").write_text('raise ImportError("deap blocked for this test")\n')
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT / "src")])}
    done = subprocess.run([sys.executable, "-m", "project_o.cli", "bench", "symbreg", "--quick"],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=120,
                          check=False)
    assert done.returncode == 2, done.stderr
    assert 'python3 -m pip install "deap>=1.4"' in done.stderr
    assert "Traceback" not in done.stderr


def test_timings_split_a_run_into_breeding_evaluation_and_recording() -> None:
    example = example_dir("symbolic_regression")
    timings = Timings()
    config = GAConfig(population=20, generations=3, tournament=3, elitism=1, seed=0)
    with EvaluatorPool(example / "task.py", workers=2) as pool:
        evolve_example(example, config, pool, timings)
    assert timings.total_s > 0 and timings.evaluation_s > 0 and timings.recording_s > 0
    assert timings.breeding_s > 0
    assert timings.evaluation_s + timings.recording_s < timings.total_s
    # four generation commits (0..3), timed on their thread
    assert timings.commit_s > 0
    # every candidate counted once, with the time it ran inside the sandbox
    assert 0 < timings.candidates <= 20 * 4 and 0 < timings.candidate_s
    assert timings.cpu_s > 0
    # the evaluators' part of it (children still running at the end count once reaped,
    # so a run this short may show none; test_population checks that they are counted)
    assert 0 <= timings.evaluators_cpu_s <= timings.cpu_s


def test_quick_run_compares_with_deap_and_notes_where_the_time_went() -> None:
    report = symbreg.run(True, _quiet)
    ours, theirs = report.rows
    assert ours["runs"] == theirs["runs"] == symbreg.QUICK[0]
    assert [t.name for t in report.targets] == ["success rate vs DEAP", "median wall time / DEAP"]
    words = next(note for note in report.notes if note.startswith("project-o time per run"))
    for part in ("breeding", "evaluation", "recording"):
        assert part in words
    # the same split in figures, so that --json carries it
    split = report.to_dict()["details"]["time_per_run"]
    for side in ("project-o", "deap"):
        assert all(split[side][f"{part}_s"] >= 0 for part in ("breeding", "evaluation"))
        assert split[side]["cpu_s"] > 0 and split[side]["evaluations"] > 0
    assert split["deap"]["recording_s"] == 0 < split["project-o"]["recording_s"]
    assert split["project-o"]["commit_s"] > 0
    assert any(note.startswith("CPU time per run") for note in report.notes)
