"""A candidate that changes the evaluator it runs beside is caught, and costs nobody else."""

from __future__ import annotations

from pathlib import Path

import pytest

from project_o.evolution.genome import Genome
from project_o.evolution.population import EvaluatorPool

#: the task scores through a helper, the usual shape (mse_of, check, ...)
TASK = '''
import math

LIMIT = 100.0


def error_of(f):
    return min(LIMIT, abs(f(2.0) - 4.0))


def evaluate(agent):
    return {"score": -error_of(agent.function("f"))}
'''

AGENT = '''
import sys
from project_o import Agent

agent = Agent("square")


def _task():
    return next(m for m in list(sys.modules.values()) if hasattr(m, "error_of"))


# TRICK


@agent.evolvable
def f(x):
    return x * OFFSET


@agent.handler
def handle(ctx, request):
    return f(request)
'''


def _agent(trick: str, offset: float) -> Genome:
    """An agent whose f is off by ``offset`` and that plays ``trick`` on the task."""
    source = AGENT.replace("OFFSET", repr(offset)).replace(
        "# TRICK", _TRICKS[trick])
    return Genome({"agent.py": source})


_TRICKS = {
    "none": "pass",
    # at import: rebind the helper, or a constant the score is capped with
    "rebind": "_task().error_of = lambda f: 0.0",
    "limit": "_task().LIMIT = 0.0",
    "builtin": "import builtins\nbuiltins.abs = lambda value: 0.0",
    # at import: wrap what carries the result out of the child (a forger's first step)
    "framing": "import project_o.wire.framing as _f\n_real = _f.encode_frame\n"
               "_f.encode_frame = lambda *a, **k: _real(*a, **k)",
    "evaluator": "import project_o.evolution.evaluator as _e\n_real = _e._write_all\n"
                 "_e._write_all = lambda fd, data: _real(fd, data)",
}


@pytest.fixture
def task(tmp_path: Path) -> Path:
    path = tmp_path / "task.py"
    path.write_text(TASK)
    return path


@pytest.mark.parametrize("trick", ["rebind", "limit", "builtin", "framing", "evaluator"])
def test_tampering_at_import_is_gamed_and_the_rest_of_the_batch_is_honest(
        task: Path, trick: str) -> None:
    cheat = _agent(trick, 3.0)  # honestly: |2*3 - 4| = 2
    honest = [_agent("none", offset) for offset in (1.0, 2.0, 2.5)]
    with EvaluatorPool(task, workers=1, batch_size=4) as pool:
        results = pool.evaluate([cheat, *honest])
    assert results[cheat.id].kind == "gamed"
    assert "changed the evaluator" in results[cheat.id].failure["reason"]
    assert [results[g.id].fitness for g in honest] == [-2.0, 0.0, -1.0]


def test_changing_the_helpers_code_while_scored_is_gamed(task: Path) -> None:
    source = _agent("none", 3.0).sources["agent.py"].replace(
        "    return x * 3.0",
        "    _task().error_of.__code__ = (lambda f: 0.0).__code__\n    return x * 3.0")
    cheat, honest = Genome({"agent.py": source}), _agent("none", 2.5)
    with EvaluatorPool(task, workers=1, batch_size=2) as pool:
        results = pool.evaluate([cheat, honest])
    assert results[cheat.id].kind == "gamed"
    assert "error_of" in results[cheat.id].failure["reason"]
    assert results[honest.id].fitness == -1.0  # scored by the real helper, in a fresh child


def test_a_task_keeping_its_own_state_is_not_tampering(tmp_path: Path) -> None:
    path = tmp_path / "task.py"
    path.write_text(TASK.replace("def evaluate(agent):\n",
                                 "CALLS = 0\n\n\ndef evaluate(agent):\n"
                                 "    global CALLS\n    CALLS += 1\n"))
    genomes = [_agent("none", offset) for offset in (1.0, 2.0, 2.5)]
    with EvaluatorPool(path, workers=1, batch_size=3) as pool:
        results = pool.evaluate(genomes)
    assert [results[g.id].fitness for g in genomes] == [-2.0, 0.0, -1.0]


@pytest.mark.parametrize("trick", ["rebind", "evaluator"])
def test_a_streamed_cheat_is_gamed_and_the_candidates_after_it_run_fresh(
        task: Path, trick: str) -> None:
    cheat = _agent(trick, 3.0)
    honest = [_agent("none", offset) for offset in (1.0, 2.0, 2.5)]
    with EvaluatorPool(task, workers=1) as pool:
        stream = pool.stream()
        for genome in [honest[0], cheat, *honest[1:]]:  # queued behind it in its child
            stream.submit(genome)
        results = stream.results()
        stream.close()
    assert results[cheat.id].kind == "gamed"
    assert [results[g.id].fitness for g in honest] == [-2.0, 0.0, -1.0]
