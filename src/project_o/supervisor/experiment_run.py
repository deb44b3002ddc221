"""One experiment, as one coroutine: the protected evolution cycle from top to bottom.

::

    ExperimentRun(experiment, genome, tools).run() -> Verdict
        validate     compiles, params fit                         fails: rejected
        checkpoint   the main's state, acknowledged, before anything risky
        launch       its own zygote imports it; its quick checks pass   fails: rejected
        shadow       Mirror or Split routing at the spec's share      worse / dies: rejected
        canary       Split routing at 10% → 50% → 100% of real traffic, each stage
                     until min_samples per arm; at the last partial stage, until a
                     metric is better (or "no improvement")      worse / dies: rolled back
        promote      the canary's writes applied; hot reload of the host to the
                     candidate, memory intact
        validation window  Watch routing: N requests under watch   a crash or more
                                                                   errors: rolled back
        learn        the ledger: catalog, events, the operator bandit, the main told

Samples reach the coroutine through one :class:`asyncio.Queue`: answered
requests and mirrored comparisons from the routing policies, the
candidate's death from its ``on_failure``, users' feedback and crashes of
the promoted version from the supervisor (:meth:`ExperimentRun.offer`).
Each stage takes samples until it is done or a guardrail decides: a
candidate that dies, hangs or breaks the protocol, a metric significantly
*worse*, or an error rate over :data:`ERROR_RATE_LIMIT`.

The verdict is the return value. Two futures tell the caller how far the
run got: :attr:`ExperimentRun.validated` (the agent's ``ctx.evolve`` is
answered from it) and :attr:`ExperimentRun.launched` (``POST
/v1/evolution/experiments`` is); each holds None once passed, or the
verdict if the experiment ended before. The run's scope (an exit stack)
owns the candidate and a :class:`asyncio.TaskGroup` for the shadow
comparisons; the candidate's own tasks are in the candidate's group:
nothing outlives the run, and a comparison that fails ends it.

A canary's writes are acknowledged once durable in an overlay of their
own (:mod:`project_o.vault.quarantine`), never in the agent's WAL: at
promotion they are appended to it before the hot reload; any other verdict
leaves them quarantined, tagged with the version, the requests that made
them and the reason, until someone applies them by hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self

from project_o.errors import AgentLoadError
from project_o.evolution.genome import Genome
from project_o.evolution.quick_checks import run_quick_checks
from project_o.evolution.stats import BASELINE, CANDIDATE
from project_o.evolution.validate import validate
from project_o.supervisor.candidate import CANARY, SHADOW
from project_o.supervisor.config import SupervisorConfig
from project_o.supervisor.experiment import (
    Answered,
    Compared,
    Experiment,
    Failed,
    Rated,
    Sample,
    Stage,
    Verdict,
    Watched,
)
from project_o.supervisor.instance_handle import InstanceHandle
from project_o.supervisor.routing import CandidateRoute, Mirror, Router, ServingHost, Split, Watch
from project_o.vault.quarantine import OverlayInfo

__all__ = [
    "CHECKPOINT_TIMEOUT",
    "ERROR_RATE_LIMIT",
    "Candidate",
    "CheckpointJournal",
    "ExperimentRun",
    "ExperimentTools",
    "Ledger",
    "MainSlot",
    "Reloader",
]

#: how long the main may take to acknowledge the checkpoint taken before risk
CHECKPOINT_TIMEOUT = 30.0
#: error-rate guardrail: a candidate failing this share of its requests (after
#: GUARDRAIL_MIN_SAMPLES) is stopped without waiting for the sequential test
ERROR_RATE_LIMIT = 0.5
GUARDRAIL_MIN_SAMPLES = 10
#: after promotion, an error rate this much above the baseline's is a regression
REGRESSION_MARGIN = 0.1


class MainSlot(Protocol):
    """Where the main is (the host's :class:`~.instance_pool.InstancePool`)."""

    @property
    def main(self) -> InstanceHandle | None: ...


class CheckpointJournal(Protocol):
    """Checkpoints of the main (the host's :class:`~.journal.Journal`)."""

    @property
    def last_checkpoint(self) -> dict[str, Any] | None: ...

    async def request_checkpoint(self, instance: InstanceHandle, timeout: float) -> None: ...


class Reloader(Protocol):
    """Serves another version, memory intact (the host's :class:`~.hot_reload.HotReload`)."""

    async def reload(self, agent: Path, version: str, reason: str) -> None: ...


class Candidate(CandidateRoute, Protocol):
    """The candidate's processes (:class:`~.candidate.CandidateHost` is one)."""

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        traceback: TracebackType | None) -> None: ...

    async def start(self, agent: Path, version: str, experiment_id: str) -> None: ...

    async def spawn(self, role: str) -> object: ...

    async def promote_writes(self, reason: str) -> OverlayInfo | None: ...

    def quarantine_writes(self, reason: str) -> OverlayInfo | None: ...

    async def drain(self, timeout: float) -> None: ...

    async def close(self) -> None: ...


class Ledger(Protocol):
    """Where an experiment's outcome is written down and learnt from."""

    async def promoted(self, experiment: Experiment) -> None: ...

    async def learn(self, experiment: Experiment, verdict: Verdict) -> None: ...


@dataclass
class ExperimentTools:
    """What a run works with, injected (as DEAP hands ``eaSimple`` its toolbox).

    The agent host's parts come one by one: the run asks each for what it
    holds (the main's request path, its slot, its journal, its reloads).
    """

    #: the main's request path (routing sends the baseline's share there)
    serving: ServingHost
    pool: MainSlot
    journal: CheckpointJournal
    reloads: Reloader
    #: the served agent's path (``config.agent``) and the request deadline
    config: SupervisorConfig
    router: Router
    #: makes the candidate's processes; given the guardrail to call when it fails
    new_candidate: Callable[[Callable[[str], None]], Candidate]
    ledger: Ledger
    #: where candidate genomes are written for their zygote to import
    workdir: Path
    rng: random.Random
    quick_checks: Callable[[Path], Awaitable[str | None]] = run_quick_checks
    #: measures latencies (seconds)
    clock: Callable[[], float] = field(default=time.perf_counter)


class ExperimentRun:
    """Runs one experiment to its verdict; :meth:`run` reads top to bottom."""

    def __init__(self, experiment: Experiment, genome: Genome, tools: ExperimentTools) -> None:
        self.experiment, self.genome, self.tools = experiment, genome, tools
        self.serving, self.router = tools.serving, tools.router
        self.config = tools.config
        self.samples: asyncio.Queue[Sample] = asyncio.Queue()
        loop = asyncio.get_running_loop()
        #: None once the genome passed validation, else the verdict
        self.validated: asyncio.Future[Verdict | None] = loop.create_future()
        #: None once the candidate runs, else the verdict
        self.launched: asyncio.Future[Verdict | None] = loop.create_future()
        self._watched = 0
        #: set by the launch: the candidate, where its genome lives, the comparisons' group
        self._candidate: Candidate | None = None
        self._path = Path()
        self._tasks: asyncio.TaskGroup | None = None
        #: the agent and version the host served before the promotion
        self._previous = (Path(), "")

    def offer(self, sample: Sample) -> None:
        """One more sample (never blocks: the queue is unbounded)."""
        self.samples.put_nowait(sample)

    async def run(self) -> Verdict:
        """The protected evolution cycle, one step after another; the verdict it reached.

        Each step returns None to go on, or the verdict that ends the experiment.
        """
        try:
            async with contextlib.AsyncExitStack() as scope:  # the candidate, its tasks
                verdict = (self._validate()
                           or await self._checkpoint()
                           or await self._launch(scope)
                           or await self._shadow()
                           or await self._canary()
                           or await self._promote()
                           or await self._validation_window()
                           or self._promoted())
                self._keep_canary_writes(verdict)
                self.experiment.conclude()  # shown at once; winding down follows
        except Exception as exc:  # noqa: BLE001 - a bug here must not touch the baseline
            verdict = self._error(exc)
        except BaseException:  # cancelled: the supervisor stops, the run is not recorded
            _cancel_pending(self.validated, self.launched)
            raise
        finally:
            self.router.reset()  # nothing more goes to the candidate
        return await self._learn(verdict)

    # -- before any risk -------------------------------------------------------

    def _validate(self) -> Verdict | None:
        result = validate(self.genome)
        if not result:
            return Verdict.reject(f"failed validation ({result.stage}): {result.reason}")
        _settle(self.validated, None)
        return None

    async def _checkpoint(self) -> Verdict | None:
        main, journal = self.tools.pool.main, self.tools.journal
        if main is None or not main.alive:
            return Verdict.reject("no main instance to checkpoint before risk")
        await journal.request_checkpoint(main, CHECKPOINT_TIMEOUT)
        self.experiment.event("checkpoint", f"state checkpointed and acknowledged "
                              f"({journal.last_checkpoint})")
        return None

    async def _launch(self, scope: contextlib.AsyncExitStack) -> Verdict | None:
        """The candidate's zygote imports it and its quick checks pass; ``scope`` owns it."""
        genome = self.genome
        path = await asyncio.to_thread(genome.write_to, self.tools.workdir / genome.id)
        candidate = await scope.enter_async_context(
            self.tools.new_candidate(self._candidate_failed))
        try:
            await candidate.start(path, genome.id, self.experiment.id)
        except AgentLoadError as exc:
            return Verdict.reject(f"failed to import in its zygote: {exc}")
        failed = await self.tools.quick_checks(path)
        if failed is not None:
            return Verdict.reject(failed)
        self.experiment.event("validated", "compiles, params fit, imports in its own "
                              "zygote, passes its quick checks")
        # Mirrored comparisons are tasks of this group: they end before the candidate does.
        self._tasks = await scope.enter_async_context(asyncio.TaskGroup())
        scope.push_async_exit(self._wind_down)
        self._candidate, self._path = candidate, path
        _settle(self.launched, None)
        return None

    async def _wind_down(self, kind: type[BaseException] | None, *_: object) -> bool:
        """No more requests to the candidate; those it has are answered; it stops."""
        self.router.reset()
        candidate = self._live_candidate
        if kind is None:  # when cancelled, nobody waits for answers
            await candidate.drain(self.config.request_deadline)
        await candidate.close()  # comparisons still waiting on it end now
        return False

    def _error(self, exc: Exception) -> Verdict:
        error = _first_error(exc)
        if self.experiment.stage is Stage.VALIDATING:
            return Verdict.reject(f"could not start the candidate: {error}")
        return Verdict.reject(f"experiment error: {type(error).__name__}: {error}")

    async def _learn(self, verdict: Verdict) -> Verdict:
        _settle(self.validated, verdict)
        _settle(self.launched, verdict)
        self.experiment.finish(verdict)
        await self.tools.ledger.learn(self.experiment, verdict)
        return verdict

    @property
    def _live_candidate(self) -> Candidate:
        if self._candidate is None:
            raise RuntimeError("the candidate is not launched")
        return self._candidate

    # -- shadow and canary -------------------------------------------------

    async def _shadow(self) -> Verdict | None:
        experiment, spec, candidate = self.experiment, self.experiment.spec, self._live_candidate
        if spec.kind != SHADOW:
            return None  # a canary experiment starts at the canary
        experiment.enter(Stage.SHADOW, f"{spec.mode} mode, share {spec.share:g}")
        await candidate.spawn(SHADOW)
        assert self._tasks is not None
        self.router.use(self._split(candidate, spec.share) if spec.mode == "split" else
                        Mirror(self.serving, candidate, share=spec.share,
                               deadline_s=self.config.request_deadline,
                               rng=self.tools.rng, report=self.offer, tasks=self._tasks,
                               clock=self.tools.clock))
        verdict = await self._collect(Stage.SHADOW, self._stage_filled)
        if verdict is None:
            experiment.event("passed", f"shadow passed after {spec.min_samples} samples per "
                             f"arm: {experiment.describe_tests()}")
        return verdict

    async def _canary(self) -> Verdict | None:
        experiment, stages = self.experiment, self.experiment.spec.stages
        candidate = self._live_candidate
        # The last stage below 100% is where the candidate must show it is better.
        gate = max((i for i, s in enumerate(stages) if s < 1.0), default=len(stages) - 1)
        self.router.reset()
        for index, share in enumerate(stages):
            experiment.enter(Stage.CANARY, f"{share:.0%} of real traffic", share=share)
            if index == 0:
                await candidate.spawn(CANARY)
            self.router.use(self._split(candidate, share))
            verdict = await self._collect(Stage.CANARY, self._stage_filled)
            if verdict is None and index == gate:
                verdict = await self._gate()
            if verdict is not None:
                return verdict
        return None

    async def _gate(self) -> Verdict | None:
        """Stay at this share until a metric is better, or give up: no improvement."""
        experiment = self.experiment
        verdict = await self._collect(Stage.CANARY, self._settled)
        if verdict is not None:
            return verdict
        better = experiment.better()
        if better:
            experiment.event("better", f"better on {', '.join(better)}: "
                             f"{experiment.describe_tests()}")
        elif experiment.spec.promote_equal:
            experiment.event("equal", f"no difference found; promote_equal is set: "
                             f"{experiment.describe_tests()}")
        else:
            return Verdict.reject(f"no improvement after {experiment.samples[CANDIDATE]} "
                                  f"candidate samples: {experiment.describe_tests()}")
        return None

    def _split(self, candidate: Candidate, share: float) -> Split:
        return Split(self.serving, candidate, share=share,
                     deadline_s=self.config.request_deadline, rng=self.tools.rng,
                     report=self.offer, clock=self.tools.clock)

    def _stage_filled(self) -> bool:
        """min_samples per arm in this stage (at 100% the baseline gets none)."""
        counts, minimum = self.experiment.stage_samples, self.experiment.spec.min_samples
        full = self.experiment.stage is Stage.CANARY and self.experiment.share >= 1.0
        return counts[CANDIDATE] >= minimum and (full or counts[BASELINE] >= minimum)

    def _settled(self) -> bool:
        return bool(self.experiment.better()) or self.experiment.no_improvement()

    async def _collect(self, where: Stage, done: Callable[[], bool]) -> Verdict | None:
        """Take samples until ``done()``; a guardrail or a worse metric decides at once."""
        while not done():
            verdict = self._absorb(await self.samples.get(), where)
            if verdict is not None:
                return verdict
        return None

    def _absorb(self, sample: Sample, where: Stage) -> Verdict | None:
        experiment = self.experiment
        fail = Verdict.reject if where is Stage.SHADOW else Verdict.rollback
        match sample:
            case Failed(reason):
                return fail(f"died in the {where.value}: {reason}")
            case Answered(arm, latency_ms, error):
                experiment.record(arm, latency_ms, error)
            case Compared(same) if experiment.stage is Stage.SHADOW:
                experiment.record_agreement(same)
            case Rated(version, score):
                arms = {experiment.candidate_version: CANDIDATE,
                        experiment.baseline_version: BASELINE}
                if version in arms:
                    experiment.record_feedback(arms[version], score)
        return self._guardrail(where, fail)

    def _guardrail(self, where: Stage, fail: Callable[[str], Verdict]) -> Verdict | None:
        experiment = self.experiment
        worse = experiment.worse()
        if worse is not None:
            return fail(f"worse on {worse} in the {where.value}: {experiment.describe_tests()}")
        errors = experiment.tests.get("errors")
        if errors is None:
            return None
        n, rate = errors.summary()["n"][CANDIDATE], errors.summary()["mean"][CANDIDATE]
        if n >= GUARDRAIL_MIN_SAMPLES and rate > ERROR_RATE_LIMIT:
            return fail(f"error rate {rate:.0%} over the limit of {ERROR_RATE_LIMIT:.0%} in "
                        f"the {where.value} ({n} requests)")
        return None

    # -- promotion and the validation window --------------------------------

    async def _promote(self) -> Verdict | None:
        """Hot reload of the host to the candidate: memory intact (checkpoint + WAL)."""
        experiment, candidate = self.experiment, self._live_candidate
        self._previous = (self.config.agent, self.serving.version)
        experiment.enter(Stage.VALIDATION, "promoting: hot reload to the candidate")
        self.router.reset()
        await candidate.drain(self.config.request_deadline)
        applied = await candidate.promote_writes(f"promoted by experiment {experiment.id}")
        if applied is not None:
            experiment.event("writes", f"the canary's {applied.writes} writes applied to "
                             "the agent's memory")
        await candidate.close()
        self.serving.answers.trust(experiment.candidate_version)
        await self.tools.ledger.promoted(experiment)
        await self.tools.reloads.reload(self._path, experiment.candidate_version,
                                        f"promoted by experiment {experiment.id}")
        _discard(self.samples)  # what came from the canary after it was decided
        self.router.use(Watch(self.serving, experiment.candidate_version, self.offer))
        return None

    async def _validation_window(self) -> Verdict | None:
        """``validation_requests`` served by the promoted version without a regression."""
        verdict = await self._watch()
        if verdict is not None:
            self.router.reset()
            agent, version = self._previous
            await self.tools.reloads.reload(agent, version, f"rolled back: {verdict.reason}")
        return verdict

    async def _watch(self) -> Verdict | None:
        wanted = self.experiment.spec.validation_requests
        allowed = _baseline_error_rate(self.experiment) + REGRESSION_MARGIN
        errors = 0
        while self._watched < wanted:
            match await self.samples.get():
                case Failed(reason):
                    return Verdict.rollback(f"crashed after promotion: {reason}")
                case Watched(error):
                    self._watched += 1
                    errors += error
            count = self._watched
            if count >= GUARDRAIL_MIN_SAMPLES and errors / count > allowed:
                return Verdict.rollback(
                    f"regression after promotion: {errors} errors in {count} requests "
                    f"(baseline error rate {allowed - REGRESSION_MARGIN:.0%})")
        return None

    def _promoted(self) -> Verdict:
        experiment = self.experiment
        why = (f"better on {', '.join(experiment.better())}" if experiment.better()
               else "equal (promote_equal)")
        return Verdict.promote(f"{why}; validated over {self._watched} requests: "
                               f"{experiment.describe_tests()}")

    def _keep_canary_writes(self, verdict: Verdict) -> None:
        """Not promoted: the canary's writes stay out of the agent's memory, quarantined."""
        if verdict.status == "promoted" or self._candidate is None:
            return
        kept = self._candidate.quarantine_writes(f"{verdict.status}: {verdict.reason}")
        if kept is not None and kept.writes:
            self.experiment.event(
                "quarantined", f"the canary's {kept.writes} writes kept apart as {kept.id}: "
                f"`project-o vault quarantine VAULT --apply {kept.id}` applies them")

    def _candidate_failed(self, reason: str) -> None:
        self.offer(Failed(reason))


def _baseline_error_rate(experiment: Experiment) -> float:
    errors = experiment.tests.get("errors")
    return float(errors.summary()["mean"][BASELINE]) if errors is not None else 0.0


def _settle(future: asyncio.Future[Verdict | None], verdict: Verdict | None) -> None:
    if not future.done():
        future.set_result(verdict)


def _cancel_pending(*futures: asyncio.Future[Any]) -> None:
    """On cancellation: whoever waits for a milestone is not left waiting."""
    for future in futures:
        if not future.done():
            future.cancel()


def _discard(queue: asyncio.Queue[Sample]) -> None:
    while not queue.empty():
        queue.get_nowait()


def _first_error(error: Exception) -> Exception:
    """The error inside a task group's ExceptionGroup (the group adds nothing to a reason)."""
    while isinstance(error, ExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error
