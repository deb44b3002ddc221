"""The evaluation contract: a user's task file, and what one evaluation yields.

A task file is plain Python with one function::

    # task.py
    def evaluate(agent) -> dict:          # agent: a Candidate (below)
        f = agent.function("f")           # an @agent.evolvable function, called directly
        reply = agent.call({"x": 1.0})    # or the handler, with the genome's params applied
        return {"score": -error, ...}     # "score": a finite float, higher is better
                                          # "artifacts": {name: text} for the next LLM prompt

    SCORE_BOUNDS = (-1e9, 0.0)            # optional (or SCORE_RANGE): scores outside are "gamed"
    STAGES = [(quick, -1.0), (evaluate, None)]   # optional: a cascade, cheap first (.cascade)

or, for a score no candidate can forge, the two-phase form (instead of
``evaluate`` and ``STAGES``)::

    def run(agent):                       # in the sandboxed evaluator, beside the candidate
        return outputs                    # plain data (MessagePack: dict, list, str, numbers...)

    def score(outputs) -> dict:           # in the trusted parent, which never ran candidate code
        return {"score": ...}             # raising: the candidate's outputs are refused ("error")

Which guarantees each form gives (docs/design.md, "Parallel evolution"):
``evaluate`` scores in the process the candidate runs in, so the tamper
check (:mod:`.tamper`) raises the bar but code that patches and restores
within one call, mutates the task's data in place or patches the checker
itself can still fool it; with ``run``/``score`` the candidate can only
choose its outputs: the score is computed from them by code, data and
builtins it never shared a process with, and each candidate runs in an
evaluator of its own, so it cannot answer for another.

How one candidate is judged (the first half runs in a sandboxed evaluator
child, the second in the process that runs the evolution; it never trusts
the child)::

    genome ─► load (one file: from memory; a package: written to scratch/<id>)
           ─► evaluate(Candidate) ─► raw dict      (or each of STAGES while it passes)
              └─ under an alarm of TIMEOUT seconds; MemoryError / exceptions caught here
    raw dict + time, cpu, peak rss ─► validate_metrics ─► Evaluation(metrics, failure)

``failure["kind"]`` is one of :data:`FAILURE_KINDS`; a failed candidate has
the worst fitness (``-inf``). A score that is not a finite number (NaN, inf,
a string, a bool...) or lies outside ``SCORE_BOUNDS`` is *gamed*: the
candidate tried to fool the evaluator, and is treated like a crash.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import math
import numbers
import resource
import signal
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any, Final

from project_o.agent.dsl import Agent, TestClient
from project_o.agent.params import resolve
from project_o.errors import InvalidArgument
from project_o.evolution.cascade import (
    STAGE_KEYS,
    Stage,
    WireStage,
    load_stages,
    passes,
    stage_problem,
)
from project_o.evolution.genome import Genome
from project_o.evolution.module_code import ModuleCode
from project_o.evolution.tamper import Snapshot, describe
from project_o.runtime.loader import load_agent, load_agent_source
from project_o.wire.packable import find_unpackable

__all__ = [
    "ARTIFACTS_KEY",
    "FAILURE_KINDS",
    "MAX_ARTIFACT_CHARS",
    "MAX_TRACEBACK_CHARS",
    "WORST_FITNESS",
    "Candidate",
    "CandidateTimeout",
    "Evaluation",
    "Task",
    "evaluate_in_process",
    "load_task",
    "score_outputs",
    "validate_metrics",
]

#: why a candidate has no valid score
FAILURE_KINDS: Final = ("crash", "timeout", "memory", "error", "gamed")
#: the fitness of a candidate that failed: below every finite score
WORST_FITNESS: Final = -math.inf
#: tracebacks kept per failure; the end holds the frame that raised
MAX_TRACEBACK_CHARS: Final = 4000
#: the metrics Project O measures itself; a task may not set them
MEASURED: Final = ("time_s", "cpu_s", "memory_kb")
#: the key of a task's result that holds its artifacts: {name: text} for the next LLM prompt
ARTIFACTS_KEY: Final = "artifacts"
#: characters kept of each artifact (its end): a screenful, a few dozen failing cases
MAX_ARTIFACT_CHARS: Final = 2_000
#: artifacts kept per result (the first ones, in the task's order)
MAX_ARTIFACTS: Final = 16

_task_names = itertools.count(1)
#: an evaluator child's compiled parts of the candidates it loaded (:mod:`.module_code`)
_MODULE_CODE = ModuleCode()


@dataclass(frozen=True)
class Task:
    """A loaded task file."""

    path: Path
    evaluate: Callable[[Any], Any]
    score_bounds: tuple[float, float] = (-math.inf, math.inf)
    #: the imported task module (its other names: a checker, inputs, constants)
    module: ModuleType | None = None
    #: the cascade (:mod:`.cascade`); empty means one stage, ``evaluate``
    stages: tuple[Stage, ...] = ()
    #: the two-phase form: ``run(agent) -> outputs`` in the sandbox, ``score(outputs)`` outside
    run: Callable[[Any], Any] | None = None
    score: Callable[[Any], Any] | None = None

    @property
    def two_phase(self) -> bool:
        """Whether the task scores outputs outside the sandbox (``run`` + ``score``)."""
        return self.run is not None and self.score is not None


def load_task(path: str | Path) -> Task:
    """Import the task file at ``path``; raise :class:`InvalidArgument` if it has no evaluate."""
    source = Path(path).resolve()
    if not source.is_file() or source.suffix != ".py":
        raise InvalidArgument(f"expected a task .py file with evaluate(agent), got {source}")
    module = _import(source)
    bounds = getattr(module, "SCORE_BOUNDS", getattr(module, "SCORE_RANGE", (-math.inf, math.inf)))
    low, high = (float(b) for b in bounds)
    if hasattr(module, "run") or hasattr(module, "score"):
        return _two_phase(source, module, (low, high))
    evaluate = getattr(module, "evaluate", None)
    if not callable(evaluate) and getattr(module, "STAGES", None) is None:
        raise InvalidArgument(f"{source} defines no evaluate(agent) function; add one that "
                              'returns {"score": float, ...}')
    stages = load_stages(module, evaluate)
    # (SCORE_RANGE above: an older name for the same bounds, still accepted.)
    # A cascade's last stage is the task's evaluate when the file names none.
    return Task(source, evaluate if callable(evaluate) else stages[-1].evaluate, (low, high),
                module, stages)


def _two_phase(source: Path, module: ModuleType, bounds: tuple[float, float]) -> Task:
    run, score = getattr(module, "run", None), getattr(module, "score", None)
    if not callable(run) or not callable(score):
        raise InvalidArgument(f"{source} is a two-phase task: it needs both run(agent) -> "
                              "outputs and score(outputs) -> dict")
    if hasattr(module, "evaluate") or hasattr(module, "STAGES"):
        raise InvalidArgument(f"{source} defines run/score and also evaluate or STAGES; "
                              "keep one form")

    def evaluate(agent: Any) -> Any:  # the convenience form, for callers in one process
        return score(run(agent))

    return Task(source, evaluate, bounds, module, (), run, score)


def _import(source: Path) -> ModuleType:
    name = f"project_o_task_{next(_task_names)}_{source.stem}"
    spec = importlib.util.spec_from_file_location(name, source)
    if spec is None or spec.loader is None:
        raise InvalidArgument(f"cannot import the task file {source}")
    module = importlib.util.module_from_spec(spec)
    if str(source.parent) not in sys.path:
        sys.path.insert(0, str(source.parent))  # as `python task.py` would: sibling imports
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class Candidate:
    """What ``evaluate(agent)`` receives: one loaded version of the agent."""

    def __init__(self, genome_id: str, agent: Agent, params: Mapping[str, Any]) -> None:
        self.id = genome_id
        self.agent = agent
        self._overrides = dict(params)
        #: every declared param's value in this version (its own, else the default)
        self.params: dict[str, Any] = resolve(agent.params_spec(), params).as_dict()
        self._client: TestClient | None = None

    @property
    def client(self) -> TestClient:
        """An in-process test client running the handler with this version's params."""
        if self._client is None:
            self._client = self.agent.test_client(params=self._overrides)
        return self._client

    def call(self, request: Any) -> Any:
        """Send one request to the handler (see :meth:`Agent.test_client`)."""
        return self.client.call(request)

    def function(self, name: str) -> Callable[..., Any]:
        """The ``@agent.evolvable`` function named ``name`` (its qualname), to call directly."""
        record = self.agent.evolvables.get(name)
        if record is None:
            raise InvalidArgument(f"the agent has no evolvable function {name!r}; it has "
                                  f"{sorted(self.agent.evolvables)}")
        target: Any = sys.modules[record.module]
        for part in record.qualname.split("."):
            target = getattr(target, part)
        return target  # type: ignore[no-any-return]


class CandidateTimeout(BaseException):
    """Raised by the alarm inside a candidate that ran past its time.

    A BaseException, so the candidate's own ``except Exception`` cannot swallow it.
    """


def evaluate_in_process(task: Task, genome: Genome, scratch: Path, timeout_s: float,
                        guard: Snapshot | None = None) -> dict[str, Any]:
    """Load ``genome`` and run ``task.evaluate`` on it, here; a raw result (msgpack-able).

    ``{"metrics": {...} | None, "failure": {...} | None, "time_s", "cpu_s", "memory_kb"}``,
    plus ``"tampered": True`` when ``guard`` saw the candidate change the
    evaluator (a "gamed" failure; nothing after it in this process can be trusted),
    and for a cascade ``"stage"`` (the number reached) and ``"stage_scores"``.
    Only the evaluator child calls this: it runs agent code.
    """
    started, cpu_started = time.perf_counter(), time.process_time()
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout_s)
    metrics: Any = None
    failure: dict[str, Any] | None = None
    changes: list[str] = []
    staged: dict[str, Any] = {}
    try:
        before = guard.bindings() if guard is not None else {}
        agent = _load(genome, scratch)
        if guard is not None:
            changes = guard.changed_since(before)
        if not changes:
            candidate = Candidate(genome.id, agent, genome.params)
            if task.run is not None and task.two_phase:
                staged = {"outputs": _outputs(task.run(candidate))}
            elif len(task.stages) > 1:
                metrics, changes, staged = _run_stages(task.stages, candidate, guard)
            else:
                metrics = _plain(task.evaluate(candidate))
    except CandidateTimeout:
        failure = {"kind": "timeout", "reason": f"ran past its {timeout_s:g} s"}
    except MemoryError as exc:
        failure = _failure("memory", exc)
    except BaseException as exc:  # noqa: BLE001 - anything the candidate raises is its failure
        failure = _failure("error", exc)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    changes = changes or (guard.code_changed() if guard is not None else [])
    if changes:
        metrics, failure = None, {"kind": "gamed", "reason": describe(changes)}
        if "stage" in staged:
            failure["stage"] = staged["stage"]  # where it was caught
    if failure is not None:  # a two-phase result holds outputs only when nothing failed
        staged.pop("outputs", None)
    return {"metrics": metrics, "failure": failure, "tampered": bool(changes),
            "time_s": time.perf_counter() - started, "cpu_s": time.process_time() - cpu_started,
            "memory_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, **staged}


def _run_stages(stages: tuple[Stage, ...], candidate: Candidate, guard: Snapshot | None,
                ) -> tuple[Any, list[str], dict[str, Any]]:
    """Each stage while the one before passed; the tamper check before going on."""
    scores: list[Any] = []
    for number, stage in enumerate(stages, 1):
        metrics = _plain(stage.evaluate(candidate))
        scores.append(metrics.get("score") if isinstance(metrics, dict) else None)
        last = number == len(stages) or not passes(metrics, stage.threshold)
        # The caller checks after the stage that ends it; a stage that goes on is checked
        # here, so no stage runs beside an evaluator a candidate has changed.
        changes = [] if last or guard is None else guard.code_changed()
        if last or changes:
            break
    return metrics, changes, {"stage": number, "stage_scores": scores}


def _load(genome: Genome, scratch: Path) -> Agent:
    """The genome's Agent: a single file straight from memory, a package from scratch files."""
    if genome.is_package:
        return load_agent(genome.write_to(scratch / genome.id, durable=False))
    [(name, text)] = genome.sources.items()
    # The same name for every candidate of the batch: their unchanged code is then shared
    # as compiled and named (module_code); the lines shown in a traceback are the
    # candidate's own (registered for this name as it loads).
    return load_agent_source(text, f"{scratch}/{name}", compiler=_MODULE_CODE.compile)


def _outputs(value: Any) -> Any:
    """What ``run`` returned, if it can travel to the parent; else the candidate's error."""
    found = find_unpackable(value)
    if found is not None:
        path, reason = found
        raise InvalidArgument(f"run() must return plain data (MessagePack); outputs"
                              f"{''.join(f'[{step!r}]' for step in path)}: {reason}")
    return value


def score_outputs(task: Task, outputs: Any) -> tuple[Any, dict[str, Any] | None]:
    """``task.score(outputs)`` in this (trusted) process: (metrics, None) or (None, failure).

    ``score`` raising means the candidate's outputs are not acceptable: an
    "error" failure of that candidate, with the traceback.
    """
    assert task.score is not None
    try:
        return _plain(task.score(outputs)), None
    except Exception as exc:  # noqa: BLE001 - outputs a candidate chose must not stop the run
        return None, _failure("error", exc)


def _on_alarm(signum: int, frame: FrameType | None) -> None:
    raise CandidateTimeout()


def _failure(kind: str, exc: BaseException) -> dict[str, Any]:
    text = "".join(_plain_traceback(exc).format())[-MAX_TRACEBACK_CHARS:]
    return {"kind": kind, "reason": f"{type(exc).__name__}: {exc}"[:500], "traceback": text}


class _PlainStack(traceback.StackSummary):
    """Frames printed without the ``^^^`` markers under each line.

    Python 3.11 parses every line of a traceback again to place them: for a
    candidate that fails fast (a division by zero), that cost more than
    loading and running it. File, line, function and code are all kept.
    """

    def format_frame_summary(self, frame_summary: traceback.FrameSummary) -> str:
        line = (frame_summary.line or "").strip()
        return (f'  File "{frame_summary.filename}", line {frame_summary.lineno}, in '
                f"{frame_summary.name}\n" + (f"    {line}\n" if line else ""))


def _plain_traceback(exc: BaseException) -> traceback.TracebackException:
    """``exc``'s traceback, its causes and contexts included, with plain frames."""
    top = traceback.TracebackException.from_exception(exc)
    todo, seen = [top], set()
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        current.stack = _PlainStack(current.stack)
        todo += [t for t in (current.__cause__, current.__context__, *(current.exceptions or ()))
                 if t is not None]
    return top


def clip_artifacts(value: Any) -> dict[str, str] | str:
    """A task's ``artifacts`` as text values, each at most :data:`MAX_ARTIFACT_CHARS`."""
    if not isinstance(value, Mapping):
        return clip_text(value)
    return {str(key): clip_text(item) for key, item in list(value.items())[:MAX_ARTIFACTS]}


def clip_text(value: Any) -> str:
    """``value`` as text (JSON unless it is a str), its last :data:`MAX_ARTIFACT_CHARS`."""
    text = value if isinstance(value, str) else json.dumps(value, default=repr)
    return text[-MAX_ARTIFACT_CHARS:]


def _plain(value: Any) -> Any:
    """The task's answer as msgpack can carry it: numbers stay numbers, others become text."""
    if not isinstance(value, Mapping):
        return repr(value)[:200]
    out: dict[str, Any] = {}
    for key, item in value.items():
        if key == ARTIFACTS_KEY:
            out[key] = clip_artifacts(item)  # evidence for the next LLM prompt, as text
        elif isinstance(item, bool | str | None):
            out[str(key)] = item
        elif isinstance(item, numbers.Integral):
            out[str(key)] = int(item)
        elif isinstance(item, numbers.Real):
            out[str(key)] = float(item)  # numpy scalars too; NaN stays NaN, for the judge
        else:
            out[str(key)] = repr(item)[:200]
    return out


@dataclass(frozen=True)
class Evaluation:
    """The judged result of one candidate (stored in the catalog, reused by genome id)."""

    genome_id: str
    metrics: dict[str, Any] = field(default_factory=dict)
    failure: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        """Whether it produced a valid score."""
        return self.failure is None

    @property
    def fitness(self) -> float:
        """The score, or :data:`WORST_FITNESS` for a failure."""
        return float(self.metrics["score"]) if self.failure is None else WORST_FITNESS

    @property
    def merit(self) -> tuple[int, float]:
        """What ranks candidates: (cascade stage reached, fitness), so stopping early loses."""
        return (self.stage or 0, self.fitness)

    @property
    def stage(self) -> int | None:
        """The cascade stage it reached (from 1), or ``None`` for a one-stage task or a failure."""
        stage = self.metrics.get("stage")
        return stage if isinstance(stage, int) else None

    @property
    def kind(self) -> str:
        """``"ok"`` or the failure kind."""
        return "ok" if self.failure is None else str(self.failure.get("kind", "crash"))


def validate_metrics(genome_id: str, raw: Mapping[str, Any],
                     bounds: tuple[float, float] = (-math.inf, math.inf),
                     stages: Sequence[WireStage] = ()) -> Evaluation:
    """Judge a raw result: the measured figures plus the task's metrics, or a failure.

    ``stages`` are the task's cascade as the zygote read it (name, threshold):
    with more than one, the stage reached is checked against them and recorded.
    """
    measured = {key: raw.get(key) for key in MEASURED if _number(raw.get(key))}
    failure = raw.get("failure")
    if failure is not None:
        return Evaluation(genome_id, measured, dict(failure))
    metrics = raw.get("metrics")
    problem = _score_problem(metrics, bounds)
    if problem is None and len(stages) > 1:
        assert isinstance(metrics, Mapping)  # _score_problem refuses anything else
        problem = stage_problem(raw.get("stage"), raw.get("stage_scores"), stages,
                                metrics["score"])
        if problem is None:
            reached = int(raw["stage"])
            measured.update(stage=reached, stage_name=stages[reached - 1][0])
    if problem is not None:
        return Evaluation(genome_id, measured, {"kind": "gamed", "reason": problem})
    assert isinstance(metrics, Mapping)  # _score_problem refuses anything else
    task_metrics = {k: v for k, v in metrics.items() if k not in MEASURED + STAGE_KEYS}
    task_metrics["score"] = float(metrics["score"])
    return Evaluation(genome_id, {**task_metrics, **measured})


def _score_problem(metrics: Any, bounds: tuple[float, float]) -> str | None:
    if not isinstance(metrics, Mapping):
        return f"evaluate() must return a dict with 'score', got {str(metrics)[:80]}"
    score = metrics.get("score")
    if not isinstance(score, int | float) or isinstance(score, bool):
        return f"'score' must be a number, got {score!r:.80}"
    if not math.isfinite(score):
        return f"'score' must be finite, got {score!r}"
    if not bounds[0] <= score <= bounds[1]:
        return f"'score' {score!r} is outside the task's SCORE_BOUNDS {list(bounds)}"
    return None


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
