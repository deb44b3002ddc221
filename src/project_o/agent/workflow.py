"""Durable workflows: steps whose completed results survive a crash.

::

    wf = agent.workflow("report")

    @wf.step                                   # first step: a root
    def fetch(ctx, inputs): ...                # inputs = {"input": <run input>}
    @wf.step(retries=2, backoff=0.5)           # no after=: runs after the step above
    def crunch(ctx, inputs): ...               # inputs = {"input": ..., "fetch": <result>}
    @wf.step(after=["fetch", "crunch"])        # a DAG: name the steps it needs
    def store(ctx, inputs): ...

    ctx.workflows.run("report", input=x)       # run, or resume, one run of it

What a run journals (each entry is durable before the run moves on)::

    workflow_started   {run_id, workflow, input, at}
    workflow_step_done {run_id, step, result, attempts}     one per completed step
    workflow_finished  {run_id, status: "succeeded" | "failed", error, at}

    crash ──► restart, WAL replay ──► the same request is re-dispatched
          ──► run(...) with the same run_id finds the run in the WorkflowStore
          ──► skips every step with a result; starts again at the step that was running

Steps run in a deterministic topological order (ties in declaration
order). A step that raises is retried up to ``retries`` times, sleeping
``backoff * 2**(attempt - 1)`` seconds between attempts (capped at
:data:`MAX_BACKOFF`); when the attempts run out the run is journaled as
failed and :class:`WorkflowFailed` is raised, then and on every later run
with that id. A step interrupted by a crash has journaled nothing, so it
runs again: steps should be idempotent, or record their side effects.

The run id defaults to ``"<request id>:<workflow>:<n>"`` (the n-th run of
that workflow in the request): the supervisor re-dispatches a request with
its id after a crash, so a re-dispatched request resumes its own runs as
long as the handler starts them in the same order.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, NoReturn, Protocol, TypeVar, overload

import msgpack

from project_o.agent.store import APPLIED, DurableWrite
from project_o.agent.toolbox import IDLE_SLICE
from project_o.errors import InvalidArgument, ProjectOError
from project_o.wire import ensure_packable

if TYPE_CHECKING:
    from project_o.agent.context import Context

__all__ = [
    "FAILED",
    "MAX_BACKOFF",
    "MAX_FINISHED_RUNS",
    "RUNNING",
    "SUCCEEDED",
    "WORKFLOW_FINISHED",
    "WORKFLOW_OPERATIONS",
    "WORKFLOW_STARTED",
    "WORKFLOW_STEP_DONE",
    "HasWorkflows",
    "Step",
    "StepFunction",
    "Workflow",
    "WorkflowFailed",
    "WorkflowRunner",
    "WorkflowStore",
    "Workflows",
]

WORKFLOW_STARTED: Final = "workflow_started"
WORKFLOW_STEP_DONE: Final = "workflow_step_done"
WORKFLOW_FINISHED: Final = "workflow_finished"
#: the WAL operations the WorkflowStore applies
WORKFLOW_OPERATIONS: Final = frozenset({WORKFLOW_STARTED, WORKFLOW_STEP_DONE, WORKFLOW_FINISHED})
RUNNING: Final = "running"
SUCCEEDED: Final = "succeeded"
FAILED: Final = "failed"
#: longest pause between two attempts of a step, in seconds: past this a
#: retry is no longer a blip to wait out but an outage the caller must see
MAX_BACKOFF: Final = 30.0
#: finished runs kept in the store (and its checkpoints); older ones are
#: dropped first, so a long-lived agent's state does not grow without bound
MAX_FINISHED_RUNS: Final = 1000
#: the key of a step's inputs that holds the run's input (no step may take it)
INPUT_KEY: Final = "input"

#: ``step(ctx, inputs) -> result``; inputs = {"input": run input, <dep>: <dep's result>}
StepFunction = Callable[["Context", dict[str, Any]], Any]
_F = TypeVar("_F", bound=StepFunction)


class WorkflowFailed(ProjectOError):
    """A workflow run failed: a step raised on every attempt it was allowed.

    ``error`` is what the run journaled (``step``, ``type``, ``message``,
    ``attempts``); the step's last exception is the ``__cause__`` when the
    failure happened in this process. Run again with a new ``run_id`` to
    start over.
    """

    def __init__(self, run_id: str, error: Mapping[str, Any]) -> None:
        super().__init__(
            f"workflow run {run_id!r} failed at step {error.get('step')!r} after "
            f"{error.get('attempts')} attempt(s): {error.get('type')}: {error.get('message')}"
        )
        self.run_id = run_id
        self.error = dict(error)


def _copy(value: Any) -> Any:
    """A deep copy through MessagePack: what a value looks like after a restore."""
    return msgpack.unpackb(msgpack.packb(value, use_bin_type=True), raw=False)


@dataclass(frozen=True)
class Step:
    """One step: its function, the steps it waits for, and its retry policy."""

    name: str
    function: StepFunction
    after: tuple[str, ...]
    retries: int = 0
    backoff: float = 0.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        return min(self.backoff * 2.0 ** (attempt - 1), MAX_BACKOFF)


class Workflow:
    """A named set of steps forming a DAG (a sequence by default)."""

    def __init__(self, name: str) -> None:
        if not isinstance(name, str) or not name:
            raise InvalidArgument(f"a workflow needs a non-empty str name, got {name!r}")
        self.name = name
        self.steps: dict[str, Step] = {}

    def __repr__(self) -> str:
        return f"Workflow({self.name!r}, steps={list(self.steps)})"

    @overload
    def step(self, function: _F, /) -> _F: ...
    @overload
    def step(self, function: None = None, /, *, name: str | None = None,
             after: Sequence[str] | None = None, retries: int = 0,
             backoff: float = 0.0) -> Callable[[_F], _F]: ...

    def step(self, function: StepFunction | None = None, /, *, name: str | None = None,
             after: Sequence[str] | None = None, retries: int = 0,
             backoff: float = 0.0) -> Any:
        """Decorator: add ``function(ctx, inputs)`` as a step.

        ``after`` names the steps whose results it needs; left out, the step
        runs after the one declared just before it (``after=[]``: a root).
        ``retries`` extra attempts, ``backoff`` seconds doubling per retry.
        """
        def register(fn: StepFunction) -> StepFunction:
            self._add(fn, name, after, retries, backoff)
            return fn

        return register(function) if function is not None else register

    def _add(self, fn: StepFunction, name: str | None, after: Sequence[str] | None,
             retries: int, backoff: float) -> None:
        if not callable(fn):
            raise InvalidArgument(f"a workflow step must be a function, got {fn!r}")
        step_name = name if name is not None else getattr(fn, "__name__", "")
        if not isinstance(step_name, str) or not step_name or step_name == INPUT_KEY:
            raise InvalidArgument(
                f"workflow {self.name!r}: a step needs a str name other than "
                f"{INPUT_KEY!r}, got {step_name!r}"
            )
        if step_name in self.steps:
            raise InvalidArgument(f"workflow {self.name!r} already has a step {step_name!r}")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise InvalidArgument(f"step {step_name!r}: retries must be an int >= 0, "
                                  f"got {retries!r}")
        if isinstance(backoff, bool) or not isinstance(backoff, (int, float)) or backoff < 0:
            raise InvalidArgument(f"step {step_name!r}: backoff must be seconds >= 0, "
                                  f"got {backoff!r}")
        deps = self._deps(step_name, after)
        self.steps[step_name] = Step(step_name, fn, deps, retries, float(backoff))

    def _deps(self, step_name: str, after: Sequence[str] | None) -> tuple[str, ...]:
        if after is None:  # a sequence: after the step declared last
            return tuple(list(self.steps)[-1:])
        if isinstance(after, str) or not all(isinstance(dep, str) for dep in after):
            raise InvalidArgument(
                f"step {step_name!r}: after must be a list of step names, got {after!r}"
            )
        return tuple(dict.fromkeys(after))

    def order(self) -> list[Step]:
        """The steps in the order they run: dependencies first, ties as declared."""
        if not self.steps:
            raise InvalidArgument(f"workflow {self.name!r} has no steps; add some with @wf.step")
        rank = {name: index for index, name in enumerate(self.steps)}
        waiting = {name: set(step.after) for name, step in self.steps.items()}
        for name, deps in waiting.items():
            unknown = sorted(deps - rank.keys())
            if unknown:
                raise InvalidArgument(
                    f"workflow {self.name!r}: step {name!r} waits for unknown steps {unknown}"
                )
        ready = [rank[name] for name, deps in waiting.items() if not deps]
        heapq.heapify(ready)
        order: list[Step] = []
        names = list(self.steps)
        while ready:
            step = self.steps[names[heapq.heappop(ready)]]
            order.append(step)
            for name, deps in waiting.items():
                if step.name in deps:
                    deps.discard(step.name)
                    if not deps:
                        heapq.heappush(ready, rank[name])
        if len(order) < len(self.steps):
            stuck = sorted(set(self.steps) - {step.name for step in order})
            raise InvalidArgument(f"workflow {self.name!r} has a cycle among steps {stuck}")
        return order

    def output(self, results: Mapping[str, Any]) -> Any:
        """A finished run's value: the last step's result, or one per final step.

        The final steps are those no other step waits for; with one, its
        result is the output; with several, ``{step: result}``.
        """
        needed = {dep for step in self.steps.values() for dep in step.after}
        finals = [name for name in self.steps if name not in needed]
        if len(finals) == 1:
            return _copy(results[finals[0]])
        return {name: _copy(results[name]) for name in finals}


class WorkflowStore:
    """Runs and their completed step results (``agent_state["workflows"]``).

    A :class:`~project_o.agent.store.Store`. Snapshot layout::

        {run_id: {"workflow", "input", "status", "results": {step: result},
                  "attempts": {step: n}, "error", "started_at", "finished_at"}}
    """

    name: Final = "workflows"
    section: Final = "agent_state"
    operations: Final = WORKFLOW_OPERATIONS

    def __init__(self) -> None:
        self._runs: dict[str, dict[str, Any]] = {}

    def apply(self, operation: str, data: Mapping[str, Any]) -> None:
        """Apply one journaled workflow operation."""
        if operation not in WORKFLOW_OPERATIONS:
            raise InvalidArgument(f"{operation!r} is not a workflow operation; expected one "
                                  f"of {sorted(WORKFLOW_OPERATIONS)}")
        run_id = data.get("run_id") if isinstance(data, Mapping) else None
        if not isinstance(run_id, str):
            raise InvalidArgument(f"{operation} needs a str run_id, got {run_id!r}")
        if operation == WORKFLOW_STARTED:
            self._start(run_id, data)
            return
        run = self._runs.get(run_id)
        if run is None:
            raise InvalidArgument(f"{operation} for run {run_id!r}, which never started")
        if operation == WORKFLOW_STEP_DONE:
            run["results"][str(data.get("step"))] = _copy(data.get("result"))
            run["attempts"][str(data.get("step"))] = data.get("attempts", 1)
        else:
            self._finish(run_id, run, data)

    def _start(self, run_id: str, data: Mapping[str, Any]) -> None:
        if run_id in self._runs:
            return  # already started: the first start wins
        self._runs[run_id] = {
            "workflow": data.get("workflow"), "input": _copy(data.get("input")),
            "status": RUNNING, "results": {}, "attempts": {}, "error": None,
            "started_at": data.get("at"), "finished_at": None,
        }

    def _finish(self, run_id: str, run: dict[str, Any], data: Mapping[str, Any]) -> None:
        status = data.get("status")
        if status not in (SUCCEEDED, FAILED):
            raise InvalidArgument(f"run {run_id!r} finished with an unknown status {status!r}")
        run.update(status=status, error=data.get("error"), finished_at=data.get("at"))
        finished = [rid for rid, r in self._runs.items() if r["status"] != RUNNING]
        for old in finished[: max(0, len(finished) - MAX_FINISHED_RUNS)]:
            del self._runs[old]

    def get(self, run_id: str) -> dict[str, Any] | None:
        """One run's record (a copy), or None."""
        run = self._runs.get(run_id)
        return None if run is None else _copy(run)

    def results(self, run_id: str) -> dict[str, Any]:
        """The completed steps' results of a run (the stored objects: do not mutate)."""
        results: dict[str, Any] = self._runs[run_id]["results"]
        return results

    def run_ids(self) -> list[str]:
        """Every known run id, oldest first."""
        return list(self._runs)

    def snapshot(self) -> dict[str, Any]:
        """The whole store as plain values."""
        return _copy(self._runs)  # type: ignore[no-any-return]

    def load(self, snapshot: Any) -> None:
        """Replace the store with ``snapshot`` (as :meth:`snapshot` returned it)."""
        if not isinstance(snapshot, Mapping):
            raise InvalidArgument(
                f"a workflows snapshot must be a map, got {type(snapshot).__name__}"
            )
        self._runs = {str(rid): dict(run) for rid, run in _copy(dict(snapshot)).items()}


def _nothing() -> None:
    """The default idle hook."""


class HasWorkflows(Protocol):
    """What a :class:`WorkflowRunner` reads of an agent (a :class:`~project_o.agent.dsl.Agent`).

    A protocol, not the class: the DSL builds on this module.
    """

    @property
    def name(self) -> str: ...
    @property
    def workflows(self) -> Mapping[str, Workflow]: ...


class WorkflowRunner:
    """Runs and resumes workflow runs for one agent in one process (kit-level)."""

    def __init__(self, agent: HasWorkflows, store: WorkflowStore, journal: DurableWrite, *,
                 idle: Callable[[], None] = _nothing,
                 clock: Callable[[], float] = time.time) -> None:
        self.agent = agent
        self.store = store
        self._journal = journal
        self.idle = idle
        self._clock = clock

    def _write(self, operation: str, data: dict[str, Any]) -> None:
        if self._journal(operation, data) is not APPLIED:
            self.store.apply(operation, data)

    def run(self, ctx: Context | None, name: str, run_id: str, input: Any = None) -> Any:
        """Run (or resume, or return the output of) the run ``run_id`` of ``name``."""
        workflow = self._workflow(name)
        steps = workflow.order()
        run = self.store.get(run_id)
        if run is None:
            ensure_packable(input, f"input of workflow {name!r}")
            self._write(WORKFLOW_STARTED, {"run_id": run_id, "workflow": name,
                                           "input": input, "at": self._clock()})
            run = self.store.get(run_id)
            assert run is not None
        elif run["workflow"] != name:
            raise InvalidArgument(f"run {run_id!r} belongs to workflow {run['workflow']!r}, "
                                  f"not {name!r}; pick another run_id")
        if run["status"] == FAILED:
            raise WorkflowFailed(run_id, run["error"] or {})
        if run["status"] == RUNNING:
            for step in steps:
                if step.name not in run["results"]:
                    self._run_step(ctx, run_id, step, run["input"])
            output = workflow.output(self.store.results(run_id))
            self._write(WORKFLOW_FINISHED, {"run_id": run_id, "status": SUCCEEDED,
                                            "error": None, "at": self._clock()})
            return output
        return workflow.output(run["results"])

    def _workflow(self, name: str) -> Workflow:
        workflow = self.agent.workflows.get(name)
        if workflow is None:
            known = sorted(self.agent.workflows) or "none"
            raise InvalidArgument(f"agent {self.agent.name!r} has no workflow {name!r}; "
                                  f"declared: {known}")
        return workflow

    def _run_step(self, ctx: Context | None, run_id: str, step: Step, input: Any) -> None:
        done = self.store.results(run_id)
        for attempt in range(1, step.retries + 2):
            inputs = _copy({INPUT_KEY: input, **{dep: done[dep] for dep in step.after}})
            try:
                result = step.function(ctx, inputs)  # type: ignore[arg-type]
                ensure_packable(result, f"result of step {step.name!r}")
            except InvalidArgument as exc:  # an unstorable result: retrying cannot help
                self._fail(run_id, step, attempt, exc)
            except Exception as exc:  # noqa: BLE001 - a step may raise anything
                if attempt > step.retries:
                    self._fail(run_id, step, attempt, exc)
                self._pause(step.delay(attempt))
                continue
            self._write(WORKFLOW_STEP_DONE, {"run_id": run_id, "step": step.name,
                                             "result": result, "attempts": attempt})
            return

    def _fail(self, run_id: str, step: Step, attempts: int, exc: Exception) -> NoReturn:
        error = {"step": step.name, "type": type(exc).__name__,
                 "message": str(exc)[:_MAX_ERROR_CHARS], "attempts": attempts}
        self._write(WORKFLOW_FINISHED, {"run_id": run_id, "status": FAILED, "error": error,
                                        "at": self._clock()})
        raise WorkflowFailed(run_id, error) from exc

    def _pause(self, seconds: float) -> None:
        """Sleep, calling ``idle`` at least every IDLE_SLICE (the runtime beats from it)."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, IDLE_SLICE))
            self.idle()


#: how much of a failed step's message a run journals
_MAX_ERROR_CHARS: Final = 2000


class Workflows:
    """``ctx.workflows``: run, resume and inspect this agent's workflows."""

    def __init__(self, runner: WorkflowRunner) -> None:
        self._runner = runner
        self._ctx: Context | None = None
        self._counts: dict[str, int] = {}

    def bind(self, ctx: Context) -> Workflows:
        """Attach the request's context (steps receive it)."""
        self._ctx = ctx
        return self

    def run(self, name: str, input: Any = None, *, run_id: str | None = None) -> Any:
        """Run workflow ``name`` to the end and return its output.

        With a ``run_id`` already seen, resume that run (completed steps are
        not run again) or return its stored output. Raises
        :class:`WorkflowFailed` when a step runs out of attempts.
        """
        if run_id is None:
            run_id = self._derived_id(name)
        elif not isinstance(run_id, str) or not run_id:
            raise InvalidArgument(f"run_id must be a non-empty str, got {run_id!r}")
        return self._runner.run(self._ctx, name, run_id, input)

    async def arun(self, name: str, input: Any = None, *, run_id: str | None = None) -> Any:
        """:meth:`run`, awaitable: the steps run on a worker thread."""
        if run_id is None:
            run_id = self._derived_id(name)  # here, so ids follow the order of the calls
        return await asyncio.to_thread(self.run, name, input, run_id=run_id)

    def _derived_id(self, name: str) -> str:
        count = self._counts.get(name, 0) + 1
        self._counts[name] = count
        request_id = None if self._ctx is None else self._ctx.request_id
        return f"{request_id}:{name}:{count}"

    def status(self, run_id: str) -> dict[str, Any] | None:
        """A run's record (workflow, status, results so far, error), or None."""
        return self._runner.store.get(run_id)

    def runs(self) -> list[str]:
        """The ids of the runs the store knows, oldest first."""
        return self._runner.store.run_ids()
