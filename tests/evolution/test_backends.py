"""SubprocessBackend against a catalogue of misbehaving candidates (real processes, real kills)."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import pytest

from project_o.errors import InvalidArgument
from project_o.evolution.backends import (
    FAILURE_KINDS,
    Evaluation,
    EvaluationBackend,
    SubprocessBackend,
    check_metrics,
    failure,
)
from project_o.evolution.genome import Genome

TASK = '''SCORE_RANGE = (0.0, 1.0)


def evaluate(agent):
    out = agent.call({"x": 3})
    return {"score": float(out["score"]), "echo": out.get("x")}
'''

_AGENT = '''import os, sys, time
from project_o import Agent

agent = Agent("candidate")
THRESHOLD = agent.param("threshold", 0.5, low=0.0, high=1.0)


@agent.handler
def handle(ctx, request):
    BODY
'''

#: name -> handler body: the fault injectors
BODIES = {
    "good": 'return {"score": ctx.params.threshold, "x": request["x"]}',
    "raise": 'raise ValueError("boom")',
    "exit": "os._exit(3)",
    "segfault": "import ctypes; ctypes.string_at(0)",
    "hang": "time.sleep(100)",
    "spin": "while True: pass",
    "memory_bomb": 'block = bytearray(4 << 30); return {"score": 0.1}',
    "nan": 'return {"score": float("nan")}',
    "out_of_range": 'return {"score": 7.0}',
    "chatty_kill": 'print("last words", flush=True); os.kill(os.getpid(), 9)',
}
EXPECTED = {
    "good": "ok", "raise": "exception", "exit": "crash", "segfault": "signal", "hang": "hang",
    "spin": "hang", "memory_bomb": "exception", "nan": "gamed", "out_of_range": "gamed",
    "chatty_kill": "signal",
}


def candidate(body: str, params: dict[str, float] | None = None) -> Genome:
    return Genome({"agent.py": _AGENT.replace("BODY", body)}, params)


@pytest.fixture()
def task(tmp_path: Path) -> Path:
    path = tmp_path / "task.py"
    path.write_text(TASK)
    return path


def test_every_fault_is_classified_and_spares_the_others(task: Path) -> None:
    genomes = [candidate(body) for body in BODIES.values()]
    with SubprocessBackend(workers=4) as backend:
        assert isinstance(backend, EvaluationBackend)
        results = backend.evaluate(genomes, task, timeout_s=3.0, memory_mb=768)
    assert [r.genome_id for r in results] == [g.id for g in genomes]  # input order
    kinds = {name: r.kind for name, r in zip(BODIES, results)}
    assert kinds == EXPECTED
    by_name = dict(zip(BODIES, results))
    assert by_name["good"].metrics == {"score": 0.5, "echo": 3}
    assert by_name["good"].peak_rss > 1 << 20
    assert "ValueError: boom" in by_name["raise"].failure["detail"]
    assert "ValueError" in by_name["raise"].failure["traceback"]
    assert "code 3" in by_name["exit"].failure["detail"]
    assert "SIGSEGV" in by_name["segfault"].failure["detail"]
    assert "MemoryError" in by_name["memory_bomb"].failure["detail"]
    assert "last words" in by_name["chatty_kill"].failure["last_output"]
    assert "SCORE_RANGE" in by_name["out_of_range"].failure["detail"]
    assert all(r.failure is None or r.failure["kind"] in FAILURE_KINDS for r in results)


def test_params_reach_the_candidate(task: Path) -> None:
    genome = candidate(BODIES["good"], {"threshold": 0.25})
    [result] = SubprocessBackend(workers=1).evaluate([genome], task, timeout_s=10, memory_mb=768)
    assert result.metrics == {"score": 0.25, "echo": 3}


def test_a_hang_takes_its_whole_process_group_down(task: Path, tmp_path: Path) -> None:
    marker = tmp_path / "grandchild.pid"
    body = (f"import subprocess; p = subprocess.Popen(['sleep', '300']); "
            f"open({str(marker)!r}, 'w').write(str(p.pid)); time.sleep(100)")
    [result] = SubprocessBackend(workers=1).evaluate([candidate(body)], task, timeout_s=2,
                                                     memory_mb=768)
    assert result.kind == "hang"
    grandchild = int(marker.read_text())
    deadline = time.monotonic() + 5
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(grandchild), "the candidate's own child outlived the killpg"


def test_the_environment_is_scrubbed(task: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    body = 'return {"score": 1.0 if "OPENAI_API_KEY" in os.environ else 0.0, "x": 0}'
    [result] = SubprocessBackend(workers=1).evaluate([candidate(body)], task, timeout_s=10,
                                                     memory_mb=768)
    assert result.metrics == {"score": 0.0, "echo": 0}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie is dead for our purpose
        return stat.read().split(") ")[1][0] != "Z"


def test_check_metrics_refuses_what_would_fool_a_selector() -> None:
    assert check_metrics({"score": 0.5, "time": 1.0}) is None
    assert check_metrics({"score": 1}, (0, 1)) is None
    assert "score" in check_metrics({"time": 1.0})
    assert "score" in check_metrics({"score": True})
    assert "finite" in check_metrics({"score": 0.5, "time": math.inf})
    assert "finite" in check_metrics({"score": -math.inf})
    assert "SCORE_RANGE" in check_metrics({"score": 1.5}, (0, 1))
    assert "dict" in check_metrics([("score", 1.0)])


def test_evaluation_round_trips_and_failure_kinds_are_checked() -> None:
    evaluation = Evaluation("abc", None, failure("hang", "slow"), 1.5, 1024)
    assert Evaluation.from_dict(evaluation.to_dict()) == evaluation
    assert evaluation.kind == "hang" and not evaluation.ok
    with pytest.raises(InvalidArgument):
        failure("melted", "no such kind")


def test_bad_arguments_are_refused(tmp_path: Path, task: Path) -> None:
    backend = SubprocessBackend(workers=1)
    with pytest.raises(InvalidArgument):
        backend.evaluate([candidate(BODIES["good"])], tmp_path / "missing.py", timeout_s=1,
                         memory_mb=256)
    with pytest.raises(InvalidArgument):
        backend.evaluate([candidate(BODIES["good"])], task, timeout_s=0, memory_mb=256)
    backend.close()
    with pytest.raises(InvalidArgument):
        backend.evaluate([], task, timeout_s=1, memory_mb=256)
