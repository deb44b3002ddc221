"""What the evaluator pool's sandbox takes from a candidate (real processes, real kills).

A hang takes its whole process group down, secrets never reach a candidate,
and the task file's score bounds are enforced on what comes back.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import psutil
import pytest

from project_o.errors import InvalidArgument
from project_o.evolution.genome import Genome
from project_o.evolution.population import EvaluatorPool
from project_o.runtime.confine.pids import inner_pid

TASK = '''SCORE_RANGE = (0.0, 1.0)


def evaluate(agent):
    return {"score": float(agent.call({"x": 3})["score"])}
'''

_AGENT = '''import os, signal, subprocess, time
from project_o import Agent

agent = Agent("candidate")


@agent.handler
def handle(ctx, request):
    BODY
'''

#: how long a grandchild may take to be reaped after its group was killed
REAP_WAIT_S = 5.0


def candidate(body: str) -> Genome:
    return Genome({"agent.py": _AGENT.replace("BODY", body)})


@pytest.fixture
def task(tmp_path: Path) -> Path:
    path = tmp_path / "task.py"
    path.write_text(TASK)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("hang", [
    "time.sleep(100)",  # the alarm breaks it; the child exits, its group dies with it
    # only the pool's SIGKILL of the group ends this one
    "signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM}); time.sleep(100)",
])
def test_a_hang_takes_its_whole_process_group_down(task: Path, tmp_path: Path,
                                                   hang: str) -> None:
    out = tmp_path / "out"
    out.mkdir()
    marker = out / "grandchild.pid"
    body = (f"p = subprocess.Popen(['sleep', '300']); "
            f"open({str(marker)!r}, 'w').write(str(p.pid)); {hang}")
    genome = candidate(body)
    with EvaluatorPool(task, workers=1, timeout_s=1.0, memory_mb=768, writable=[out]) as pool:
        result = pool.evaluate([genome])[genome.id]
    assert result.kind == "timeout", result.failure
    # The pid the candidate saw is its sandbox's: look for that sleep from the host.
    seen = int(marker.read_text())
    deadline = time.monotonic() + REAP_WAIT_S
    while _sandboxed_sleeps(seen) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _sandboxed_sleeps(seen), "the candidate's own child outlived its process group"


def test_the_environment_is_scrubbed(task: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    body = 'return {"score": 0.5 if "OPENAI_API_KEY" in os.environ else 1.0}'
    genome = candidate(body)
    with EvaluatorPool(task, workers=1, memory_mb=768) as pool:
        result = pool.evaluate([genome])[genome.id]
    assert result.ok and result.fitness == 1.0, result.failure


@pytest.mark.parametrize("declaration", ["SCORE_RANGE", "SCORE_BOUNDS"])
def test_the_task_files_score_bounds_are_enforced(tmp_path: Path, declaration: str) -> None:
    task = tmp_path / "task.py"
    task.write_text(TASK.replace("SCORE_RANGE", declaration))
    inside, outside = candidate('return {"score": 1.0}'), candidate('return {"score": 7.0}')
    with EvaluatorPool(task, workers=1, memory_mb=768) as pool:
        results = pool.evaluate([inside, outside])
    assert results[inside.id].ok and results[inside.id].fitness == 1.0
    assert results[outside.id].kind == "gamed"
    assert "outside" in results[outside.id].failure["reason"]  # type: ignore[index]


def test_bad_arguments_are_refused(tmp_path: Path, task: Path) -> None:
    with pytest.raises(InvalidArgument, match="does not exist"):
        EvaluatorPool(tmp_path / "missing.py")
    with pytest.raises(InvalidArgument, match="timeout_s"):
        EvaluatorPool(task, timeout_s=0)
    with pytest.raises(InvalidArgument, match="workers"):
        EvaluatorPool(task, workers=0)


def _sandboxed_sleeps(seen: int) -> list[int]:
    """Live ``sleep 300`` processes in a PID namespace where they are ``seen``."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if process.info["cmdline"] != ["sleep", "300"]:
            continue
        with contextlib.suppress(OSError):
            if inner_pid(process.pid) == seen and _alive(process.pid):
                found.append(process.pid)
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie is dead for our purpose
        return stat.read().split(") ")[1][0] != "Z"
