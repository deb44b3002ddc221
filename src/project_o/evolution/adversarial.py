"""Red team vs blue team: inputs evolved to break the agent, code evolved to survive them.

::

    round r ┌─ red:  propose inputs ── generate(rng) / hypothesis strategy() of the task
            │                        └─ mutate seen inputs: char flips, boundary values,
            │                           duplication, truncation, deletion, splicing
            │        champion plays them (a match, in sandboxes) ── judge each output:
            │           exception │ timeout │ gamed (NaN, ±inf) │ wrong (task's check())
            │        failing inputs with a new signature ──► findings.jsonl (fsynced)
            │                                                 = the regression suite
            └─ blue: champion fails the suite? one generation of children
                       (operators chosen by an OperatorBandit, donors from the population)
                     every child plays the whole suite + the original task
                     a child that passes strictly more findings without losing original
                     score, or passes all of them with a higher score, becomes champion
    stop:  converged (red found nothing new for K rounds and the champion passes the
           whole suite) │ round budget │ wall-clock budget
    end:   the champion is promoted: its files are written, the summary reports it

A match is one evaluation per genome on the same evaluators as the genetic
algorithm: an :class:`~project_o.evolution.population.EvaluatorPool` here, or
a :class:`~project_o.evolution.ray_population.RayPopulation` on a cluster.
The referee starts them once per run on a task file of its own, and tells
each match its inputs through a data file beside it::

    scratch/match_task.py     written once: the evaluators' task, imported once (in the
                              zygote): play_match(original task, agent, match.json)
    scratch/original_task.py  -> the user's task file (a symlink; a copy on a Ray worker)
    scratch/match.json        rewritten before each match: {"match": n, "inputs": [...],
                              "timeout_s", "input_timeout_s"}

In the evaluator, ``play_match`` runs the original ``evaluate(agent)`` under
an alarm of ``timeout_s``, then every input under its own alarm, and returns
the task's metrics plus the unjudged outputs. The arbiter (this process)
runs the task's ``check(input, output) -> bool | str`` on them, so candidate
code never judges itself. A match that dies as a whole (a crash, or a hang
in C code the alarms cannot break) is replayed input by input to find the
culprit. One pool for the whole run, because starting one (~0.3 s) costs
more than a match of a small agent (~0.02 s). As in the pool, the sandbox
contains accidents and runaway code: a candidate that deliberately rewrites
``match.json`` can spoil the evaluations after its own in that match, never
the judging (the referee keeps its own copy of the inputs).

The task file (trusted user code) provides ``evaluate(agent)``,
``check(input, output)``, and seeds for red: ``EXAMPLES`` (a list of inputs),
``generate(rng)`` and/or ``strategy()`` (a hypothesis strategy). Every random
choice comes from one ``random.Random(seed)``: the same seed, the same run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import random
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Final, Protocol, Self

from project_o.errors import InvalidArgument
from project_o.evolution.bandit import OperatorBandit
from project_o.evolution.genome import Genome
from project_o.evolution.operators import Operator, default_operators
from project_o.evolution.population import EvaluatorPool
from project_o.evolution.task import Evaluation, Task, load_task
from project_o.evolution.validate import validate
from project_o.vault.atomic import fsync_directory

__all__ = [
    "DEFAULT_PATIENCE",
    "FINDINGS_FILE",
    "MATCH_DATA",
    "MATCH_TASK",
    "ORIGINAL_TASK",
    "OUTCOMES_METRIC",
    "AdversarialConfig",
    "AdversarialResult",
    "Evaluators",
    "EvaluatorsFactory",
    "Finding",
    "FindingStore",
    "RedTeam",
    "iter_findings",
    "judge",
    "load_task_module",
    "local_evaluators",
    "mutate",
    "play_match",
    "ray_evaluators",
    "run_adversarial",
]

#: where findings live, under the vault directory (one JSON object per line)
FINDINGS_FILE: Final = Path("redteam") / "findings.jsonl"
#: rounds without a new finding before red is declared beaten (K)
DEFAULT_PATIENCE: Final = 3
#: one input of a well-behaved parser takes microseconds; a quarter second is a hang
DEFAULT_INPUT_TIMEOUT_S: Final = 0.25
#: new findings kept per round: enough to pin a bug class, few enough to stay a fast suite
MAX_FINDINGS_PER_ROUND: Final = 3
#: the referee's folder (see the module docstring)
MATCH_TASK: Final = "match_task.py"
ORIGINAL_TASK: Final = "original_task.py"
MATCH_DATA: Final = "match.json"
#: the metric a match carries its outputs in: one JSON text, since metrics are flat
OUTCOMES_METRIC: Final = "match_outcomes"
#: operator draws per child before giving up (some operators find no site in some code)
_OPERATOR_TRIES: Final = 12
#: inputs longer than this are cut by mutation (keeps findings readable and matches fast)
MAX_INPUT_CHARS: Final = 200
#: values a boundary mutation substitutes for an int (word sizes overflow elsewhere)
_BOUNDARY_INTS: Final = (0, -1, 1, 2**31 - 1, -(2**31), 2**63)
#: ... and for a float (signed zero, the largest and the smallest positive)
_BOUNDARY_FLOATS: Final = (0.0, -0.0, 1e308, -1e308, 5e-324)
#: characters a mutation inserts into text: separators, quotes, controls, non-ASCII
_NASTY_CHARS: Final = "=;\"' \t\n\\\x00é€"


# -- findings, kept durably ------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """An input the champion failed at the time red found it."""

    input: Any
    kind: str  # exception | timeout | gamed | wrong (judged); crash | memory (a whole match)
    detail: str
    signature: str  # kind plus exception class: what "new" is measured by
    round: int
    blue: str  # the champion's genome id

    @property
    def key(self) -> str:
        """Content id of the input (two findings with equal inputs are one)."""
        return _input_key(self.input)

    def to_dict(self) -> dict[str, Any]:
        """The JSON line stored in the findings file."""
        return {"input": self.input, "kind": self.kind, "detail": self.detail,
                "signature": self.signature, "round": self.round, "blue": self.blue}


class FindingStore:
    """``VAULT/redteam/findings.jsonl``: append-only, each line fsynced before it counts."""

    def __init__(self, vault: str | Path) -> None:
        self.vault = Path(vault)
        self.path = self.vault / FINDINGS_FILE

    def load(self) -> list[Finding]:
        """Every stored finding; a torn last line (a crash mid-append) is ignored."""
        if not self.path.exists():
            return []
        findings = []
        for line in self.path.read_text().splitlines():
            try:
                findings.append(Finding(**json.loads(line)))
            except (ValueError, TypeError):
                continue  # only a torn tail can be malformed: appends are whole lines
        return findings

    def append(self, finding: Finding) -> None:
        """Add one finding durably (write, fsync; the directory too when the file is new)."""
        new = not self.path.exists()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(finding.to_dict(), sort_keys=True) + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode())
            os.fsync(fd)  # an fsync error propagates: never retried (see vault.atomic)
        finally:
            os.close(fd)
        if new:
            fsync_directory(self.path.parent)


# -- red: input generation and fuzzing -------------------------------------


class RedTeam:
    """Proposes inputs: fresh ones from the task, and mutations of inputs seen so far."""

    def __init__(self, task: Any, rng: random.Random) -> None:
        self._task = task
        self._rng = rng
        self.seen: list[Any] = list(getattr(task, "EXAMPLES", []))
        self._strategy = task.strategy() if hasattr(task, "strategy") else None

    def remember(self, inputs: Sequence[Any]) -> None:
        """Inputs worth mutating later (findings first, by calling order)."""
        known = {_input_key(x) for x in self.seen}
        self.seen += [x for x in inputs if _input_key(x) not in known]

    def propose(self, count: int) -> list[Any]:
        """``count`` distinct inputs: about a third fresh, the rest mutants of seen ones."""
        proposals: dict[str, Any] = {}
        for _ in range(count * 4):
            if len(proposals) >= count:
                break
            fresh = not self.seen or self._rng.random() < 1 / 3
            value = self._fresh() if fresh else mutate(self._rng.choice(self.seen), self._rng)
            proposals.setdefault(_input_key(value), value)
        return list(proposals.values())

    def _fresh(self) -> Any:
        if self._strategy is not None and self._rng.random() < 0.5:
            return _draw(self._strategy, self._rng)
        if hasattr(self._task, "generate"):
            return self._task.generate(self._rng)
        return mutate(self._rng.choice(self.seen or [""]), self._rng)


def _draw(strategy: Any, rng: random.Random) -> Any:
    """One value of a hypothesis strategy, drawn with ``rng`` (so it is reproducible)."""
    # Hypothesis' public API draws only inside @given; its conjecture data object
    # is the documented-in-source way to draw with a chosen random source.
    from hypothesis.internal.conjecture.data import ConjectureData

    return ConjectureData(random=rng).draw(strategy)


def mutate(value: Any, rng: random.Random) -> Any:
    """A small random change of ``value`` (text, number, list or dict), type kept."""
    if isinstance(value, str):
        return _mutate_text(value, rng)[:MAX_INPUT_CHARS]
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        boundary = _BOUNDARY_INTS if isinstance(value, int) else _BOUNDARY_FLOATS
        return rng.choice(boundary) if rng.random() < 0.5 else value + rng.choice((-1, 1))
    if isinstance(value, list) and value:
        return _mutate_list(value, rng)
    if isinstance(value, dict) and value:
        key = rng.choice(sorted(value, key=str))
        return {**value, key: mutate(value[key], rng)}
    return value


def _mutate_text(text: str, rng: random.Random) -> str:
    if not text:
        return rng.choice(_NASTY_CHARS)
    i = rng.randrange(len(text))
    j = rng.randrange(i, len(text) + 1)
    how = rng.randrange(6)
    if how == 0:  # flip: replace one character with a nasty one
        return text[:i] + rng.choice(_NASTY_CHARS) + text[i + 1:]
    if how == 1:  # insert a nasty character
        return text[:i] + rng.choice(_NASTY_CHARS) + text[i:]
    if how == 2:  # delete a span
        return text[:i] + text[j:]
    if how == 3:  # duplicate a span
        return text[:j] + text[i:j] + text[j:]
    if how == 4:  # truncate
        return text[:i]
    return text[i:j] + text[:i] + text[j:]  # move a span to the front


def _mutate_list(items: list[Any], rng: random.Random) -> list[Any]:
    i = rng.randrange(len(items))
    how = rng.randrange(3)
    if how == 0:
        return items[:i] + [mutate(items[i], rng)] + items[i + 1:]
    if how == 1:
        return items + items[i:i + 1]
    return items[:i]


# -- matches: played in the evaluators, judged here -------------------------


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


_MATCH_TASK_SOURCE: Final = f'''"""A red/blue match, written by project_o.evolution.adversarial: do not edit.

The evaluators import this once; the referee rewrites {MATCH_DATA} beside it
before each match, and every evaluation reads its inputs from there.
"""
from pathlib import Path

from project_o.evolution.adversarial import play_match
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


@dataclass
class _Verdict:
    """One genome against one list of inputs."""

    evaluation: Evaluation
    failures: list[tuple[str, str, str] | None] = field(default_factory=list)

    @property
    def alive(self) -> bool:
        return self.evaluation.ok

    @property
    def score(self) -> float:
        return self.evaluation.fitness

    @property
    def passed(self) -> int:
        return sum(f is None for f in self.failures) if self.alive else -1


#: the verdict on every input of a match whose outputs came back missing or altered
_ALTERED: Final = ("gamed", "outcomes missing or altered", "gamed")


class _Referee:
    """Plays genomes against inputs on the evaluators and judges the outputs here."""

    def __init__(self, task: ModuleType, folder: Path, evaluators: Evaluators,
                 config: AdversarialConfig) -> None:
        self.task, self.folder, self.evaluators = task, folder, evaluators
        self.timeout_s, self.input_timeout_s = config.timeout_s, config.input_timeout_s
        self._matches = 0

    def play(self, genomes: Sequence[Genome], inputs: Sequence[Any]) -> list[_Verdict]:
        """Every genome against ``inputs``, in one match; verdicts in the order of ``genomes``."""
        self._write_match(inputs)
        results = self.evaluators.evaluate(genomes)
        return [self._verdict(results[g.id], inputs) for g in genomes]

    def _write_match(self, inputs: Sequence[Any]) -> None:
        # No evaluator runs between matches (evaluate() has returned), so no reader sees
        # a half-written file; the match number catches one that read a stale file.
        self._matches += 1
        match = {"match": self._matches, "inputs": list(inputs), "timeout_s": self.timeout_s,
                 "input_timeout_s": self.input_timeout_s}
        (self.folder / MATCH_DATA).write_text(json.dumps(match))

    def _verdict(self, evaluation: Evaluation, inputs: Sequence[Any]) -> _Verdict:
        if not evaluation.ok:
            return _Verdict(evaluation)
        outcomes = self._outcomes(evaluation)
        if outcomes is None or len(outcomes) != len(inputs):
            return _Verdict(evaluation, [_ALTERED] * len(inputs))
        return _Verdict(evaluation, [judge(self.task, v, o) for v, o in zip(inputs, outcomes)])

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
def _open_referee(task_file: Path, task: ModuleType, folder: Path, config: AdversarialConfig,
                  evaluators: EvaluatorsFactory, most_inputs: int) -> Iterator[_Referee]:
    """Write the referee's folder, start the evaluators on it; stop them on exit."""
    (folder / ORIGINAL_TASK).symlink_to(task_file)
    (folder / MATCH_TASK).write_text(_MATCH_TASK_SOURCE)
    (folder / MATCH_DATA).write_text(json.dumps({"match": 0, "inputs": []}))
    # The evaluators' own timeout is only the backstop for hangs the match's alarms cannot
    # break (C code): room for the original evaluation and the longest match of the run.
    backstop = config.timeout_s + config.input_timeout_s * most_inputs
    with evaluators(folder / MATCH_TASK, timeout_s=backstop, memory_mb=config.memory_mb,
                    data_files=[folder / ORIGINAL_TASK, folder / MATCH_DATA]) as started:
        yield _Referee(task, folder, started, config)


def _whole_failure(verdict: _Verdict) -> tuple[str, str, str] | None:
    failure = verdict.evaluation.failure or {}
    kind = str(failure.get("kind", "crash"))
    if kind == "error":
        return None  # the original task failed, not this input: not red's finding
    return kind, str(failure.get("reason", "")), kind


def load_task_module(path: str | Path) -> ModuleType:
    """The task file as a module (``check``, ``EXAMPLES``...), imported by :func:`load_task`."""
    task = load_task(path)
    # load_task registers the module under the name its functions carry.
    module = sys.modules.get(getattr(task.evaluate, "__module__", ""))
    if module is None or getattr(module, "evaluate", None) is not task.evaluate:
        raise InvalidArgument(f"{task.path}: define evaluate(agent) in the task file itself; "
                              "the red/blue referee reads check() and red's seeds beside it")
    return module


# -- the arbiter -----------------------------------------------------------


@dataclass(frozen=True)
class AdversarialConfig:
    """Knobs of a red/blue run; the defaults suit a small agent on a laptop."""

    rounds: int = 20
    budget_s: float = 600.0
    seed: int = 0
    patience: int = DEFAULT_PATIENCE
    red_inputs: int = 16
    blue_children: int = 8
    blue_population: int = 6
    #: the original evaluate(agent)'s alarm, in each match
    timeout_s: float = 20.0
    #: address space of an evaluator process
    memory_mb: int = 1024
    #: each input's alarm
    input_timeout_s: float = DEFAULT_INPUT_TIMEOUT_S


@dataclass
class AdversarialResult:
    """What a run found and which blue code survived it."""

    seed: Genome
    winner: Genome
    findings: list[Finding]
    passes_all: bool
    winner_score: float
    rounds: int
    stop_reason: str
    history: list[dict[str, Any]]
    winner_path: Path | None = None


@dataclass
class _Member:
    genome: Genome
    passed: int
    score: float

    def key(self) -> tuple[int, float]:
        return self.passed, self.score


def run_adversarial(agent_path: str | Path, task_path: str | Path, *,
                    config: AdversarialConfig = AdversarialConfig(),
                    vault: str | Path | None = None, operators: dict[str, Operator] | None = None,
                    progress: Callable[[dict[str, Any]], None] | None = None,
                    evaluators: EvaluatorsFactory | None = None) -> AdversarialResult:
    """Run red vs blue on the agent at ``agent_path`` until convergence or budget.

    Matches run on ``evaluators`` (default: :func:`local_evaluators`, an
    evaluator pool on this machine). Findings already in ``vault`` are the
    starting regression suite; new ones are appended there as they are
    found, and the winner is written to ``VAULT/redteam/winner/<id>/``.
    """
    task_file = Path(task_path).resolve()
    task = load_task_module(task_file)
    if not callable(getattr(task, "check", None)):
        raise InvalidArgument(f"{task_file} needs check(input, output) -> bool | str for "
                              "adversarial evolution")
    seed = Genome.from_path(agent_path)
    store = FindingStore(vault) if vault is not None else None
    findings = store.load() if store is not None else []
    # A match plays red's proposals or the whole suite, which grows by at most
    # MAX_FINDINGS_PER_ROUND a round: the longest match this run can have.
    most_inputs = max(config.red_inputs, len(findings) + config.rounds * MAX_FINDINGS_PER_ROUND)
    with tempfile.TemporaryDirectory(prefix="project-o-redblue-") as scratch, \
            _open_referee(task_file, task, Path(scratch), config,
                          evaluators or local_evaluators(), most_inputs) as referee:
        arbiter = _Arbiter(seed, task, referee, config, store, findings, operators, progress)
        return arbiter.run()


class _Arbiter:
    def __init__(self, seed: Genome, task: ModuleType, referee: _Referee,
                 config: AdversarialConfig, store: FindingStore | None, findings: list[Finding],
                 operators: dict[str, Operator] | None,
                 progress: Callable[[dict[str, Any]], None] | None) -> None:
        self.seed, self.referee, self.config = seed, referee, config
        self.rng = random.Random(config.seed)
        self.store, self.findings = store, list(findings)
        self.red = RedTeam(task, self.rng)
        self.red.remember([f.input for f in self.findings])
        self.operators = operators or default_operators()
        self.bandit = OperatorBandit(sorted(self.operators))
        self.evaluated: set[str] = set()
        self.progress = progress
        self.history: list[dict[str, Any]] = []

    def run(self) -> AdversarialResult:
        started = time.monotonic()
        self.baseline = self._original_score()
        champion = self._rate([self.seed])[0]
        population, quiet, stop, rounds = [champion], 0, "rounds", 0
        for rounds in range(1, self.config.rounds + 1):
            new = self._red_round(champion.genome, rounds)
            champion = self._rate([champion.genome])[0]
            population = self._refresh(population)
            if champion.passed < len(self.findings):
                champion, population = self._blue_round(champion, population)
            clean = champion.passed == len(self.findings)
            quiet = quiet + 1 if not new and clean else 0
            self._report(rounds, new, champion, time.monotonic() - started)
            if quiet >= self.config.patience:
                stop = "converged"
                break
            if time.monotonic() - started >= self.config.budget_s:
                stop = "budget"
                break
        return self._finish(champion, rounds, stop)

    def _original_score(self) -> float:
        """The seed's score on the original task alone: what blue must not lose."""
        # Alone, not against the stored suite: a finding that crashes the seed's whole
        # match is red's success, not a broken seed.
        [verdict] = self.referee.play([self.seed], [])
        if not verdict.alive:
            failure = verdict.evaluation.failure or {}
            raise InvalidArgument(f"the seed agent {self.seed.id} fails the original task "
                                  f"itself ({failure.get('kind')}: {failure.get('reason')}); "
                                  "fix it before hardening it")
        return verdict.score

    # -- red --------------------------------------------------------------

    def _red_round(self, champion: Genome, round_no: int) -> list[Finding]:
        inputs = self.red.propose(self.config.red_inputs)
        failures = self.referee.probe(champion, inputs)
        known = {f.key for f in self.findings}
        signatures = {f.signature for f in self.findings}
        new: list[Finding] = []
        for value, failed in zip(inputs, failures):
            if failed is None or _input_key(value) in known:
                continue
            kind, detail, signature = failed
            if signature in signatures and new:
                continue  # an old class of bug: one reminder per round is enough
            new.append(Finding(value, kind, detail[:500], signature, round_no, champion.id))
            signatures.add(signature)
            if len(new) >= MAX_FINDINGS_PER_ROUND:
                break
        for finding in new:
            if self.store is not None:
                self.store.append(finding)
            self.findings.append(finding)
        self.red.remember([f.input for f in new] + inputs)
        return new

    # -- blue -------------------------------------------------------------

    def _rate(self, genomes: Sequence[Genome]) -> list[_Member]:
        inputs = [f.input for f in self.findings]
        verdicts = self.referee.play(genomes, inputs)
        self.evaluated.update(g.id for g in genomes)
        return [_Member(g, v.passed, v.score) for g, v in zip(genomes, verdicts)]

    def _refresh(self, population: list[_Member]) -> list[_Member]:
        return self._rate([m.genome for m in population]) if population else population

    def _blue_round(self, champion: _Member, population: list[_Member],
                    ) -> tuple[_Member, list[_Member]]:
        children, ops = self._breed(population)
        if not children:
            return champion, population
        rated = self._rate(children)
        parents = {m.genome.id: m for m in population}
        for member, op in zip(rated, ops):
            parent = parents.get(member.genome.parents[0]) if member.genome.parents else None
            better = parent is not None and member.key() > parent.key()
            self.bandit.record(op, better)
            if self._beats(member, champion):
                champion = member
        pool = {m.genome.id: m for m in [*population, *rated] if m.passed >= 0}
        ranked = sorted(pool.values(), key=lambda m: (m.key(), m.genome.id), reverse=True)
        return champion, ranked[:self.config.blue_population]

    def _beats(self, member: _Member, champion: _Member) -> bool:
        keeps_task = member.score >= self.baseline
        return keeps_task and member.key() > champion.key()

    def _breed(self, population: list[_Member]) -> tuple[list[Genome], list[str]]:
        children: list[Genome] = []
        ops: list[str] = []
        for _ in range(self.config.blue_children * _OPERATOR_TRIES):
            if len(children) >= self.config.blue_children:
                break
            parent = self._tournament(population)
            name = self.bandit.choose(self.rng)
            donors = [m.genome for m in population]
            child = self.operators[name].apply(parent.genome, self.rng, donors=donors)
            if child is None or child.id in self.evaluated or not validate(child):
                continue
            self.evaluated.add(child.id)
            children.append(child)
            ops.append(name)
        return children, ops

    def _tournament(self, population: list[_Member]) -> _Member:
        picks = [self.rng.choice(population) for _ in range(2)]
        return max(picks, key=_Member.key)

    # -- reporting ----------------------------------------------------------

    def _report(self, round_no: int, new: list[Finding], champion: _Member,
                elapsed: float) -> None:
        row = {"round": round_no, "new_findings": len(new), "findings": len(self.findings),
               "champion": champion.genome.id, "passed": champion.passed,
               "score": champion.score, "elapsed_s": round(elapsed, 3),
               "kinds": sorted({f.kind for f in new})}
        self.history.append(row)
        if self.progress is not None:
            self.progress(row)

    def _finish(self, champion: _Member, rounds: int, stop: str) -> AdversarialResult:
        path = None
        if self.store is not None:
            home = self.store.vault / "redteam" / "winner" / champion.genome.id
            if not home.exists():
                path = champion.genome.write_to(home)
            else:
                path = home if champion.genome.is_package else home / next(
                    iter(champion.genome.sources))
        return AdversarialResult(
            seed=self.seed, winner=champion.genome, findings=list(self.findings),
            passes_all=champion.passed == len(self.findings), winner_score=champion.score,
            rounds=rounds, stop_reason=stop, history=self.history, winner_path=path)


def _input_key(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def iter_findings(vault: str | Path) -> Iterator[Finding]:
    """The findings stored in ``vault``, oldest first."""
    yield from FindingStore(vault).load()
