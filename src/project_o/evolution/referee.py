"""The referee: matches played in the evaluators, their outputs judged in this process.

A match is one evaluation per genome on the same evaluators as the genetic
algorithm: an :class:`~project_o.evolution.population.EvaluatorPool` here, or
a :class:`~project_o.evolution.ray_population.RayPopulation` on a cluster.
:func:`open_referee` starts them once per run on a task file of its own, and
tells each match its inputs through a data file beside it::

    scratch/match_task.py     written once: the evaluators' task, imported once (in the
                              zygote): play_match(original task, agent, match.json)
    scratch/original_task.py  -> the user's task file (a symlink; a copy on a Ray worker)
    scratch/match.json        rewritten before each match: {"match": n, "inputs": [...],
                              "timeout_s", "input_timeout_s"}

One match, end to end::

    Referee.play(genomes, inputs)
      │ write match.json (match n+1, inputs, alarms)
      ▼
    evaluators.evaluate(genomes) ── in each sandbox: play_match
      │                               evaluate(agent) under timeout_s ──► metrics
      │                               agent.call(input) under input_timeout_s, each input
      │                                 ──► {"output"} │ {"timeout"} │ {"error", "message"}
      ▼ metrics + match_outcomes (JSON: {"match": n, "outcomes": [...]})
    MatchResult per genome: judge(task, input, outcome) for every input, here
      exception │ timeout │ gamed (NaN, ±inf) │ wrong (task's check()) │ None (right)
      outcomes missing, stale (another match number) or malformed ──► every input "gamed"

The contest's own process runs the task's ``check(input, output) -> bool | str``
on the outputs, so candidate code never judges itself. A match that dies as
a whole (a crash, or a hang in C code the alarms cannot break) is replayed
input by input by :meth:`Referee.probe` to find the culprit. One pool for the
whole run, because starting one (~0.3 s) costs more than a match of a small
agent (~0.02 s). As in the pool, the sandbox contains accidents and runaway
code: a candidate that deliberately rewrites ``match.json`` can spoil the
evaluations after its own in that match, never the judging (the referee
keeps its own copy of the inputs).
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Final, Protocol, Self

from project_o.evolution.genome import Genome
from project_o.evolution.population import EvaluatorPool
from project_o.evolution.task import Evaluation, Task, load_task

__all__ = [
    "DEFAULT_INPUT_TIMEOUT_S",
    "MATCH_DATA",
    "MATCH_TASK",
    "ORIGINAL_TASK",
    "OUTCOMES_METRIC",
    "Evaluators",
    "EvaluatorsFactory",
    "MatchResult",
    "Referee",
    "judge",
    "load_task_module",
    "local_evaluators",
    "open_referee",
    "play_match",
    "ray_evaluators",
]

#: one input of a well-behaved parser takes microseconds; a quarter second is a hang
DEFAULT_INPUT_TIMEOUT_S: Final = 0.25
#: the referee's folder (see the module docstring)
MATCH_TASK: Final = "match_task.py"
ORIGINAL_TASK: Final = "original_task.py"
MATCH_DATA: Final = "match.json"
#: the metric a match carries its outputs in: one JSON text, since metrics are flat
OUTCOMES_METRIC: Final = "match_outcomes"


# -- in the evaluator: playing a match (real alarms) ------------------------


class _Alarm(BaseException):
    """Raised by the match's own alarms; a BaseException so agent code's except Exception misses it."""


#: a whole-candidate alarm that came due during the match is re-armed this short: it still fires
_OVERDUE_ALARM_S: Final = 0.001


def play_match(task: Task, agent: Any, match_file: Path) -> dict[str, Any]:
    """Inside the evaluator: the original evaluation, then every input of this match, unjudged.

    Returns the task's metrics plus :data:`OUTCOMES_METRIC`, the JSON text
    ``{"match": n, "outcomes": [...]}`` with one outcome per input:
    ``{"output": ...}``, ``{"timeout": seconds}`` or ``{"error": class, "message": ...}``.
    """
    match = json.loads(match_file.read_text())
    with _borrowed_alarm():
        metrics = dict(_evaluate_original(task, agent, float(match["timeout_s"])))
        outcomes = [_play_one(agent, value, float(match["input_timeout_s"]))
                    for value in match["inputs"]]
    report = {"match": match["match"], "outcomes": outcomes}
    return {**metrics, OUTCOMES_METRIC: json.dumps(report, default=repr)}


@contextlib.contextmanager
def _borrowed_alarm() -> Iterator[None]:
    """SIGALRM for the match's alarms; the evaluator's own is re-armed with what is left of it."""
    left, _ = signal.setitimer(signal.ITIMER_REAL, 0)
    started = time.monotonic()
    previous = signal.signal(signal.SIGALRM, _raise_alarm)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if left > 0:
            spent = time.monotonic() - started
            signal.setitimer(signal.ITIMER_REAL, max(left - spent, _OVERDUE_ALARM_S))


def _raise_alarm(signum: int, frame: Any) -> None:
    raise _Alarm


def _evaluate_original(task: Task, agent: Any, timeout_s: float) -> Any:
    signal.setitimer(signal.ITIMER_REAL, timeout_s)
    try:
        return task.evaluate(agent)
    except _Alarm:
        # An error, not a timeout: the original task failed, none of red's inputs did.
        raise TimeoutError(f"the task's evaluate(agent) ran past its {timeout_s:g} s") from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def _play_one(agent: Any, value: Any, timeout_s: float) -> dict[str, Any]:
    signal.setitimer(signal.ITIMER_REAL, timeout_s)
    try:
        return {"output": agent.call(value)}
    except _Alarm:
        return {"timeout": timeout_s}
    except Exception as exc:  # noqa: BLE001 - what the agent raised is the outcome
        return {"error": type(exc).__name__, "message": str(exc)[:300]}
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


# -- here: judging the outputs (the task's check(), never candidate code) ---


def judge(task: Any, value: Any, outcome: dict[str, Any]) -> tuple[str, str, str] | None:
    """``(kind, detail, signature)`` of a failed input, or ``None`` when the output is right."""
    if "timeout" in outcome:
        return "timeout", f"no answer within {outcome['timeout']} s", "timeout"
    if "error" in outcome:
        name = str(outcome["error"])
        return "exception", f"{name}: {outcome.get('message', '')}", f"exception:{name}"
    output = outcome.get("output")
    if _non_finite(output):
        return "gamed", f"output holds a NaN or infinity: {output!r:.200}", "gamed"
    try:
        verdict = task.check(value, output)
    except Exception as exc:  # noqa: BLE001 - output the checker chokes on is wrong
        verdict = f"check() raised {type(exc).__name__}: {exc}"
    if verdict is True:
        return None
    return "wrong", verdict if isinstance(verdict, str) else f"wrong output {output!r:.200}", \
        "wrong"


def _non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_non_finite(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_non_finite(v) for v in value)
    return False


# -- the evaluators, and the task file they run ----------------------------


_MATCH_TASK_SOURCE: Final = f'''"""A red/blue match, written by project_o.evolution.referee: do not edit.

The evaluators import this once; the referee rewrites {MATCH_DATA} beside it
before each match, and every evaluation reads its inputs from there.
"""
from pathlib import Path

from project_o.evolution.referee import play_match
from project_o.evolution.task import load_task

_HERE = Path(__file__).parent
_TASK = load_task(_HERE / {ORIGINAL_TASK!r})
SCORE_BOUNDS = _TASK.score_bounds


def evaluate(agent):
    return play_match(_TASK, agent, _HERE / {MATCH_DATA!r})
'''


class Evaluators(Protocol):
    """What the referee plays matches on: an EvaluatorPool, a RayPopulation."""

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc: object) -> None: ...

    def evaluate(self, genomes: Sequence[Genome]) -> dict[str, Evaluation]:
        """Each distinct genome evaluated once; results by genome id."""
        ...


class EvaluatorsFactory(Protocol):
    """Makes the evaluators of a task file (see :func:`local_evaluators`, :func:`ray_evaluators`).

    ``data_files`` lie beside ``task`` and are read at each evaluation;
    evaluators on other machines must ship them along.
    """

    def __call__(self, task: Path, *, timeout_s: float, memory_mb: int,
                 data_files: Sequence[Path]) -> Evaluators: ...


def local_evaluators(workers: int | None = None) -> EvaluatorsFactory:
    """Matches on an :class:`EvaluatorPool` here (``workers``: default the CPU count)."""

    def start(task: Path, *, timeout_s: float, memory_mb: int,
              data_files: Sequence[Path]) -> Evaluators:
        del data_files  # already beside the task, on this machine
        return EvaluatorPool(task, workers=workers, timeout_s=timeout_s, memory_mb=memory_mb)

    return start


def ray_evaluators(address: str | None = None, *,
                   num_cpus: int | None = None) -> EvaluatorsFactory:
    """Matches on a :class:`RayPopulation` (``address`` None: a local cluster on 127.0.0.1)."""

    def start(task: Path, *, timeout_s: float, memory_mb: int,
              data_files: Sequence[Path]) -> Evaluators:
        from project_o.evolution.ray_population import RayPopulation  # Ray is optional

        return RayPopulation(task, address=address, timeout_s=timeout_s, memory_mb=memory_mb,
                             num_cpus=num_cpus, data_files=data_files)

    return start


# -- the referee -------------------------------------------------------------


@dataclass
class MatchResult:
    """One genome against one list of inputs."""

    evaluation: Evaluation
    failures: list[tuple[str, str, str] | None] = field(default_factory=list)

    @property
    def alive(self) -> bool:
        """Whether the match survived as a whole (False: crash, hang, memory, task error)."""
        return self.evaluation.ok

    @property
    def score(self) -> float:
        """The fitness of the original task, played first in the match."""
        return self.evaluation.fitness

    @property
    def passed(self) -> int:
        """Inputs judged right; -1 for a match that died (ranks below passing none)."""
        return sum(f is None for f in self.failures) if self.alive else -1


#: the verdict on every input of a match whose outputs came back missing or altered
_ALTERED: Final = ("gamed", "outcomes missing or altered", "gamed")


class Referee:
    """Plays genomes against inputs on the evaluators and judges the outputs here."""

    def __init__(self, task: ModuleType, folder: Path, evaluators: Evaluators, *,
                 timeout_s: float, input_timeout_s: float) -> None:
        self.task, self.folder, self.evaluators = task, folder, evaluators
        self.timeout_s, self.input_timeout_s = timeout_s, input_timeout_s
        self._matches = 0

    def play(self, genomes: Sequence[Genome], inputs: Sequence[Any]) -> list[MatchResult]:
        """Every genome against ``inputs``, in one match; verdicts in the order of ``genomes``."""
        self._write_match(inputs)
        results = self.evaluators.evaluate(genomes)
        return [self._match_result(results[g.id], inputs) for g in genomes]

    def _write_match(self, inputs: Sequence[Any]) -> None:
        # No evaluator runs between matches (evaluate() has returned), so no reader sees
        # a half-written file; the match number catches one that read a stale file.
        self._matches += 1
        match = {"match": self._matches, "inputs": list(inputs), "timeout_s": self.timeout_s,
                 "input_timeout_s": self.input_timeout_s}
        (self.folder / MATCH_DATA).write_text(json.dumps(match))

    def _match_result(self, evaluation: Evaluation, inputs: Sequence[Any]) -> MatchResult:
        if not evaluation.ok:
            return MatchResult(evaluation)
        outcomes = self._outcomes(evaluation)
        if outcomes is None or len(outcomes) != len(inputs):
            return MatchResult(evaluation, [_ALTERED] * len(inputs))
        return MatchResult(evaluation, [judge(self.task, v, o) for v, o in zip(inputs, outcomes)])

    def _outcomes(self, evaluation: Evaluation) -> list[dict[str, Any]] | None:
        """The outputs of this match, or None when they are missing, stale or malformed."""
        try:
            report = json.loads(evaluation.metrics[OUTCOMES_METRIC])
        except (KeyError, TypeError, ValueError):
            return None
        if not isinstance(report, dict) or report.get("match") != self._matches:
            return None
        outcomes = report.get("outcomes")
        if not isinstance(outcomes, list) or not all(isinstance(o, dict) for o in outcomes):
            return None
        return outcomes

    def probe(self, genome: Genome, inputs: Sequence[Any]) -> list[tuple[str, str, str] | None]:
        """Failures of ``genome`` on each input; a match that dies is replayed one by one."""
        [verdict] = self.play([genome], inputs)
        if verdict.alive or not inputs:
            return verdict.failures
        results: list[tuple[str, str, str] | None] = []
        for value in inputs:
            [alone] = self.play([genome], [value])
            results.append(alone.failures[0] if alone.alive else _whole_failure(alone))
        return results


@contextlib.contextmanager
def open_referee(task_file: Path, task: ModuleType, folder: Path,
                 evaluators: EvaluatorsFactory, *, timeout_s: float, input_timeout_s: float,
                 memory_mb: int, most_inputs: int) -> Iterator[Referee]:
    """Write the referee's folder in ``folder``, start the evaluators on it; stop them on exit.

    ``timeout_s`` is the original evaluation's alarm and ``input_timeout_s``
    each input's, in every match; ``most_inputs``, the longest match the
    caller will play, sizes the evaluators' own backstop timeout.
    """
    (folder / ORIGINAL_TASK).symlink_to(task_file)
    (folder / MATCH_TASK).write_text(_MATCH_TASK_SOURCE)
    (folder / MATCH_DATA).write_text(json.dumps({"match": 0, "inputs": []}))
    # The evaluators' own timeout is only the backstop for hangs the match's alarms cannot
    # break (C code): room for the original evaluation and the longest match of the run.
    backstop = timeout_s + input_timeout_s * most_inputs
    with evaluators(folder / MATCH_TASK, timeout_s=backstop, memory_mb=memory_mb,
                    data_files=[folder / ORIGINAL_TASK, folder / MATCH_DATA]) as started:
        yield Referee(task, folder, started, timeout_s=timeout_s,
                      input_timeout_s=input_timeout_s)


def _whole_failure(verdict: MatchResult) -> tuple[str, str, str] | None:
    failure = verdict.evaluation.failure or {}
    kind = str(failure.get("kind", "crash"))
    if kind == "error":
        return None  # the original task failed, not this input: not red's finding
    return kind, str(failure.get("reason", "")), kind


def load_task_module(path: str | Path) -> ModuleType:
    """The task file as a module (``check``, ``EXAMPLES``...), imported by :func:`load_task`."""
    task = load_task(path)
    assert task.module is not None  # load_task always keeps the module it imported
    return task.module

