"""Evolution control: who may start an experiment, and the experiment API.

::

    POST /v1/evolution/experiments      create(body) ─┐
    POST .../{id}/approve               approve(id) ──┤   one at a time (409 otherwise)
    ctx.evolve (evolution_intent)       on_intent() ──┤── autonomy: off / propose / auto
    perception's intents                _act_on() ────┘
                                                      ▼
        spec ─► Variation.make (user text, operator, the bandit's "auto") ─► ledger.opened
             ─► ExperimentRun.run() in this controller's task group ─► Verdict
    GET /v1/evolution/experiments[/{id}]  ledger.get / ledger.list
    feedback on a version               on_feedback ─► the running experiment's queue
    a crash of the promoted version     (an event)  ─► the running experiment's queue

The controller is not on the request path: requests go through the
:class:`~project_o.supervisor.routing.Router`, where an experiment
installs its policy while it routes traffic. Every task the controller
starts (experiment runs, answers to perception's intents) belongs to the
task group of :meth:`EvolutionControl.run`; stopping it cancels them,
and an experiment cancelled that way stays "running" in the catalog so
the next supervisor marks it aborted.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from typing import Any

from project_o.errors import (
    CandidateInvalid,
    ExperimentConflict,
    InvalidArgument,
    ProjectOError,
    ServiceError,
    UnknownExperiment,
)
from project_o.evolution.genome import Genome
from project_o.evolution.operators import default_operators
from project_o.evolution.perception import HealthMonitor, Intent, Thresholds
from project_o.llm.client import LLMClient
from project_o.supervisor.agent_host import AgentHost
from project_o.supervisor.candidate import CandidateHost
from project_o.supervisor.events import EventLog
from project_o.supervisor.experiment import (
    Experiment,
    ExperimentSpec,
    Failed,
    Rated,
    Stage,
)
from project_o.supervisor.experiment_ledger import PROPOSED, RUNNING, ExperimentLedger
from project_o.supervisor.experiment_run import ExperimentRun, ExperimentTools
from project_o.supervisor.perceiving import Perception
from project_o.supervisor.routing import Router
from project_o.supervisor.variation import Variation
from project_o.vault import Vault

__all__ = ["AUTONOMY_LEVELS", "EvolutionControl"]

#: off: ctx.evolve is ignored; propose: recorded, needs POST .../approve; auto: started
AUTONOMY_LEVELS = ("off", "propose", "auto")
#: stages in which the experiment's samples are taken (feedback counts for an arm)
_SAMPLING = (Stage.SHADOW, Stage.CANARY)

#: the author of code the agent proposed itself with ctx.evolve (the dashboard's "agent")
AGENT = "agent"


class EvolutionControl:
    """Starts at most one experiment at a time against the serving version."""

    def __init__(self, host: AgentHost, vault: Vault, events: EventLog, router: Router, *,
                 autonomy: str = "auto", rng: random.Random | None = None,
                 thresholds: Thresholds | None = None,
                 variation: Variation | None = None) -> None:
        """``variation`` (operators and their bandit) defaults to the offline operators,
        plus the LLM rewrite when a model is configured, and the vault's bandit counts."""
        if autonomy not in AUTONOMY_LEVELS:
            raise InvalidArgument(f"autonomy must be one of {AUTONOMY_LEVELS}, got {autonomy!r}")
        self.host, self.vault, self.events, self.autonomy = host, vault, events, autonomy
        #: the main's request path; its version is the baseline of every experiment
        self.serving = host.dispatcher
        rng = rng or random.Random()
        self.perception = Perception(HealthMonitor(thresholds, autonomy=autonomy), events,
                                     act=self._act_on, busy=self._busy)
        self.variation = variation or _default_variation(host, vault, rng, self.perception)
        self.ledger = ExperimentLedger(vault.catalog, events, self.variation, host.pool,
                                       vault.quarantine)
        self.tools = ExperimentTools(
            serving=host.dispatcher, pool=host.pool, journal=host.journal,
            reloads=host.reloads, config=host.config, router=router,
            new_candidate=lambda failed: CandidateHost(host, failed), ledger=self.ledger,
            workdir=vault.path / "versions", rng=rng)
        self.current: ExperimentRun | None = None
        self._group: asyncio.TaskGroup | None = None
        self._runner: asyncio.Task[None] | None = None
        #: resolves with the error if :meth:`run` ever ends by one (its owner's to act on)
        self.failed: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()
        host.metrics.subscribe(self.perception.observe)
        events.subscribe(self._on_event)

    # -- lifetime -----------------------------------------------------------

    async def run(self, ready: asyncio.Future[None] | None = None) -> None:
        """Own every experiment and intent task until cancelled (then they are cancelled)."""
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                if ready is not None:
                    ready.set_result(None)
                await asyncio.Event().wait()  # until cancelled
        finally:
            self._group = None  # nothing more may start

    async def start(self) -> None:
        """Run :meth:`run` in the background of the supervisor (stopped by :meth:`stop`)."""
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._runner = asyncio.create_task(self.run(ready), name="evolution-control")
        self._runner.add_done_callback(self._ended)
        await ready

    def _ended(self, runner: asyncio.Task[None]) -> None:
        error = None if runner.cancelled() else runner.exception()
        if error is not None and not self.failed.done():
            self.failed.set_result(error)

    async def stop(self) -> None:
        """Cancel the running experiment (it stays "running": the next start aborts it)."""
        if self._runner is not None:
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)

    # -- the API ----------------------------------------------------------------

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        """Start an experiment (``POST /v1/evolution/experiments``); returns its summary.

        Raises ExperimentConflict (409) or CandidateInvalid (422, with the reason).
        """
        return await _launched(await self._begin(body))

    async def approve(self, experiment_id: str) -> dict[str, Any]:
        """Start a proposed experiment (autonomy "propose")."""
        record = await asyncio.to_thread(self.vault.catalog.get_experiment, experiment_id)
        if record is None:
            raise UnknownExperiment(f"no experiment has the id {experiment_id!r}")
        if record.status != PROPOSED:
            raise ExperimentConflict(
                f"experiment {experiment_id} is {record.status}, not proposed; only a "
                "proposed experiment can be approved")
        # The pinned candidate is credited to whoever proposed it, not to the approver.
        author = str(record.stats.get("operator") or "user")
        return await _launched(await self._begin(dict(record.stats.get("body") or {}),
                                                 experiment_id, author=author))

    async def on_intent(self, data: dict[str, Any]) -> dict[str, Any]:
        """The main sent ``evolution_intent`` (ctx.evolve): act as autonomy allows."""
        body = {k: data[k] for k in ("hypothesis", "params") if data.get(k) is not None}
        body["kind"] = "shadow"
        body["candidate"] = {k: data[k] for k in ("source", "files", "operator")
                             if data.get(k) is not None}
        if self.autonomy == "off":
            return {"experiment_id": None, "status": "ignored",
                    "reason": "autonomy is off: ctx.evolve is not acted upon"}
        try:
            if self.autonomy == "propose":
                return await self._propose(body, author=AGENT)
            run = await self._begin(body, author=AGENT)
            # The main waits for this answer inside its handler, so it cannot send the
            # checkpoint taken before risk until we answer: answer once it is validated.
            verdict = await run.validated
        except ServiceError as exc:
            return {"experiment_id": None, "status": "rejected", "reason": str(exc)}
        if verdict is not None:
            return {"experiment_id": None, "status": "rejected", "reason": verdict.reason}
        return {"experiment_id": run.experiment.id, "status": RUNNING, "reason": ""}

    def on_feedback(self, version: str, score: float) -> None:
        """A user rated an answer of ``version``: a feedback sample for its arm."""
        run = self.current
        if run is not None and run.experiment.stage in _SAMPLING:
            run.offer(Rated(version, score))

    # -- starting ---------------------------------------------------------------

    async def _begin(self, body: dict[str, Any], experiment_id: str | None = None, *,
                     author: str = "user") -> ExperimentRun:
        """Make the candidate, record the experiment and start its run in our task group."""
        _refuse_if_running(self.current)
        try:
            spec = ExperimentSpec.from_body(body)
        except (InvalidArgument, TypeError) as exc:
            raise CandidateInvalid(f"invalid experiment: {exc}") from exc
        baseline = await asyncio.to_thread(Genome.from_path, self.host.config.agent)
        # In a thread: the LLM rewrite operator waits on a model over HTTP.
        genome, operator = await asyncio.to_thread(self.variation.make, spec, baseline,
                                                   author=author)
        _refuse_if_running(self.current)  # another create got here during the awaits
        experiment = Experiment(experiment_id or uuid.uuid4().hex, spec, genome.id,
                                self.serving.version, operator=operator)
        run = self.current = ExperimentRun(experiment, genome, self.tools)
        try:
            await self.ledger.opened(experiment, genome, approved=experiment_id is not None)
        except BaseException:
            self.current = None  # never started: it must not block the next one
            raise
        experiment.event("created", f"{operator} candidate {genome.id} against "
                         f"{self.serving.version}: {spec.hypothesis or 'no hypothesis given'}")
        assert self._group is not None, "start() the evolution control first"
        self._group.create_task(self._conduct(run), name=f"experiment-{experiment.id}")
        return run

    async def _conduct(self, run: ExperimentRun) -> None:
        try:
            await run.run()
        except Exception as exc:  # noqa: BLE001 - the record failed; the next run may not
            self.events.record("experiment_error", run.experiment.id,
                               f"{type(exc).__name__}: {exc}")

    async def _propose(self, body: dict[str, Any], *, author: str = "user") -> dict[str, Any]:
        try:
            spec = ExperimentSpec.from_body(body)
            baseline = await asyncio.to_thread(Genome.from_path, self.host.config.agent)
            genome, operator = self.variation.make(spec, baseline, author=author)
        except (ProjectOError, TypeError) as exc:
            return {"experiment_id": None, "status": "rejected", "reason": str(exc)}
        # Pin the concrete candidate, so approving starts exactly what was proposed.
        body = {**body, "candidate": {"files": dict(genome.sources)},
                "params": dict(genome.params)}
        experiment_id = await self.ledger.proposed(body, genome, operator, self.serving.version)
        return {"experiment_id": experiment_id, "status": PROPOSED,
                "reason": "waiting for POST /v1/evolution/experiments/{id}/approve"}

    # -- what perception and the event log say ---------------------------------

    def _busy(self) -> bool:
        return self.current is not None and self.current.experiment.running

    def _act_on(self, intent: Intent) -> None:
        """Perception raised an intent: propose or start an experiment, in our task group."""
        if self._group is None:
            return  # not started (or stopped): nothing may run
        body = {"kind": "shadow", "candidate": {"operator": "auto"},
                "hypothesis": intent.hypothesis}
        self._group.create_task(self._answer(body, propose=intent.action == "propose"))

    async def _answer(self, body: dict[str, Any], *, propose: bool) -> None:
        try:
            outcome = await (self._propose(body) if propose else self.create(body))
        except Exception as exc:  # noqa: BLE001 - no mutation applies, one is running...
            why = str(exc) if isinstance(exc, ProjectOError) else f"{type(exc).__name__}: {exc}"
            self.events.record("intent_unanswered", self.serving.version, why)
            return
        self.events.record("intent_answered", self.serving.version,
                           f"experiment {outcome.get('experiment_id') or outcome.get('id')} "
                           f"({outcome.get('status')})")

    def _on_event(self, event: dict[str, Any]) -> None:
        """A crash or hang of the promoted version during validation: roll back."""
        run = self.current
        if (run is not None and run.experiment.stage is Stage.VALIDATION
                and event.get("kind") in ("crash", "hang")
                and event.get("version") == run.experiment.candidate_version):
            run.offer(Failed(f"{event['kind']}: {event.get('reason')}"))


def _default_variation(host: AgentHost, vault: Vault, rng: random.Random,
                       perception: Perception) -> Variation:
    llm = host.config.llm  # with a model configured, the LLM rewrite joins the operators
    operators = default_operators(LLMClient(llm) if llm is not None else None)
    return Variation.in_vault(vault.path, operators, rng,
                              lambda hypothesis: perception.brief(hypothesis, host.dispatcher.version))


def _refuse_if_running(run: ExperimentRun | None) -> None:
    if run is not None and run.experiment.running:
        experiment = run.experiment
        raise ExperimentConflict(
            f"experiment {experiment.id} is running ({experiment.stage_name}); wait for "
            "it to finish (GET /v1/evolution/experiments/{id})")


async def _launched(run: ExperimentRun) -> dict[str, Any]:
    """The summary once the candidate runs; CandidateInvalid (422) if it was refused."""
    verdict = await run.launched
    if verdict is not None:
        raise CandidateInvalid(verdict.reason)
    shown = run.experiment.to_dict()
    return {k: shown[k] for k in
            ("id", "kind", "candidate_version", "baseline_version", "stage", "status")}
