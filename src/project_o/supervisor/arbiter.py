"""The arbiter: shadow, canary, promotion, rollback — the protected evolution cycle.

::

    create(body) ─► candidate genome (source | files | operator, "auto": the bandit)
                 ─► validate() (compile, params)          fails: 422, recorded "rejected"
                 ─► checkpoint of the main, acknowledged   (before anything risky)
                 ─► candidate zygote imports it            fails: 422 with the traceback
    run          ─► shadow    mirror: a share of requests also goes to the shadow; its
                              answer is compared, never returned; split: returned
                 ─► canary    10% → 50% → 100% of real traffic, SequentialTests per metric
                 ─► promote   AgentHost.reload(candidate): hot reload, memory intact
                 ─► validate  N requests under watch; a crash or more errors: roll back
    learn        ─► catalog (experiment stats, decision, reason; version status),
                    events, VAULT/operators.json (the operator bandit),
                    evolution_result to the main

Guardrails act at once: a candidate that dies, hangs or breaks the protocol
is rejected (shadow: "died in the shadow: ...") or rolled back (canary), and
the client's request is answered by the main regardless. Any metric
significantly *worse* ends the experiment; promotion needs at least one
metric significantly *better* (or ``promote_equal``), else "no improvement".

Canary writes and the main's writes go to the same WAL; each instance only
applies its own acknowledged writes, so a write made via the canary is not
visible to the main until the experiment ends. Then the main is reloaded
from the vault (checkpoint + WAL): after promotion, rollback or rejection
every acknowledged write is in the agent's memory. The main's checkpoints
are paused meanwhile (see :mod:`project_o.supervisor.agent_host`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from project_o.errors import (
    AgentLoadError,
    InvalidArgument,
    PoisonRequest,
    ProjectOError,
    RequestFailed,
    RequestTimeout,
    ServiceError,
)
from project_o.evolution.bandit import OperatorBandit
from project_o.evolution.genome import Genome
from project_o.evolution.operators import default_operators
from project_o.evolution.operators.llm_rewrite import LLMRewrite, RewriteBrief
from project_o.evolution.perception import HealthMonitor, Intent, Thresholds
from project_o.evolution.quick_checks import run_quick_checks
from project_o.evolution.stats import BASELINE, CANDIDATE
from project_o.evolution.validate import validate
from project_o.llm.client import LLMClient
from project_o.supervisor.agent_host import AgentHost
from project_o.supervisor.api import EventSink, RequestResult
from project_o.supervisor.candidate import CANARY, SHADOW, CandidateHost
from project_o.supervisor.events import EventLog
from project_o.supervisor.experiment import (
    CandidateInvalid,
    Experiment,
    ExperimentConflict,
    ExperimentSpec,
    UnknownExperiment,
    record_to_dict,
)
from project_o.supervisor.instance_handle import HandlerError, InstanceDied
from project_o.vault import Vault
from project_o.vault.atomic import write_atomic
from project_o.wire import Message

__all__ = ["AUTONOMY_LEVELS", "BANDIT_FILE", "Arbiter"]

#: off: ctx.evolve is ignored; propose: recorded, needs POST .../approve; auto: started
AUTONOMY_LEVELS = ("off", "propose", "auto")
#: the operator bandit's counts, beside the catalog
BANDIT_FILE = "operators.json"
#: how long the main may take to acknowledge the checkpoint taken before risk
CHECKPOINT_TIMEOUT = 30.0
#: error-rate guardrail: a candidate failing this share of its requests (after
#: GUARDRAIL_MIN_SAMPLES) is stopped without waiting for the sequential test
ERROR_RATE_LIMIT = 0.5
GUARDRAIL_MIN_SAMPLES = 10
#: after promotion, an error rate this much above the baseline's is a regression
REGRESSION_MARGIN = 0.1
#: statuses of finished experiments; "running" and "proposed" are the others
RUNNING, PROPOSED = "running", "proposed"
ABORT_REASON = "supervisor restarted mid-experiment"
#: the main gave no answer to compare the shadow's with
_NO_ANSWER = object()


class _Verdict(Exception):
    """Control flow: the experiment is decided (status, decision, reason)."""

    def __init__(self, status: str, decision: str, reason: str) -> None:
        super().__init__(reason)
        self.status, self.decision, self.reason = status, decision, reason


class Arbiter:
    """Runs at most one experiment at a time against the serving version."""

    def __init__(self, host: AgentHost, vault: Vault, events: EventLog, *,
                 autonomy: str = "auto", rng: random.Random | None = None,
                 thresholds: Thresholds | None = None) -> None:
        if autonomy not in AUTONOMY_LEVELS:
            raise InvalidArgument(f"autonomy must be one of {AUTONOMY_LEVELS}, got {autonomy!r}")
        self.host, self.vault, self.events = host, vault, events
        self.autonomy = autonomy
        #: perception: watches the serving version and raises intents (the cycle's first step)
        self.monitor = HealthMonitor(thresholds, autonomy=autonomy)
        self.rng = rng or random.Random()
        self.current: Experiment | None = None
        self._candidate: CandidateHost | None = None
        self._experiments: dict[str, Experiment] = {}
        self._failure: str | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        # With a model configured, the LLM rewrite joins the offline operators.
        llm = host.config.llm
        self._operators = default_operators(LLMClient(llm) if llm is not None else None)
        self.bandit = self._load_bandit()
        self._validation = {"requests": 0, "errors": 0}
        events.subscribe(self._on_event)

    # -- startup / shutdown ---------------------------------------------

    def abort_leftovers(self) -> list[str]:
        """Mark experiments a previous supervisor left running as aborted (safe abort)."""
        catalog = self.vault.catalog
        aborted = []
        for record in catalog.list_experiments(status=RUNNING):
            catalog.update_experiment(record.id, status="aborted", decision="abort",
                                      stage="done", reason=ABORT_REASON)
            with contextlib.suppress(ProjectOError):
                catalog.set_version_status(record.candidate_version, "aborted", ABORT_REASON)
            self.events.record("experiment_aborted", record.id, ABORT_REASON,
                               candidate=record.candidate_version)
            aborted.append(record.id)
        return aborted

    async def stop(self) -> None:
        """Stop the running experiment's candidate (it stays "running" in the catalog,
        so the next supervisor marks it aborted)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        if self._candidate is not None:
            await self._candidate.close()

    # -- the API ---------------------------------------------------------

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        """Start an experiment (``POST /v1/evolution/experiments``); returns its summary.

        Raises ExperimentConflict (409) or CandidateInvalid (422, with the reason).
        """
        experiment, genome = await self._prepare(body)
        await self._launch(experiment, genome)
        return _summary(experiment)

    async def approve(self, experiment_id: str) -> dict[str, Any]:
        """Start a proposed experiment (autonomy "propose")."""
        record = await asyncio.to_thread(self.vault.catalog.get_experiment, experiment_id)
        if record is None:
            raise UnknownExperiment(f"no experiment has the id {experiment_id!r}")
        if record.status != PROPOSED:
            raise ExperimentConflict(
                f"experiment {experiment_id} is {record.status}, not proposed; only a "
                "proposed experiment can be approved")
        experiment, genome = await self._prepare(dict(record.stats.get("body") or {}),
                                                 experiment_id=experiment_id)
        await self._launch(experiment, genome)
        return _summary(experiment)

    async def get(self, experiment_id: str) -> dict[str, Any]:
        """``GET /v1/evolution/experiments/{id}``."""
        live = self._experiments.get(experiment_id)
        if live is not None:
            return live.to_dict()
        record = await asyncio.to_thread(self.vault.catalog.get_experiment, experiment_id)
        if record is None:
            raise UnknownExperiment(f"no experiment has the id {experiment_id!r}; list them "
                                    "with GET /v1/evolution/experiments")
        return record_to_dict(record)

    async def list(self) -> dict[str, Any]:
        """``GET /v1/evolution/experiments``: newest first."""
        records = await asyncio.to_thread(self.vault.catalog.list_experiments)
        items = [self._experiments[r.id].to_dict() if r.id in self._experiments
                 else record_to_dict(r) for r in reversed(records)]
        return {"experiments": items}

    async def on_intent(self, data: dict[str, Any]) -> dict[str, Any]:
        """The main sent ``evolution_intent`` (ctx.evolve): act as autonomy allows."""
        body = {k: data[k] for k in ("hypothesis", "params") if data.get(k) is not None}
        body["kind"] = "shadow"
        body["candidate"] = {k: data[k] for k in ("source", "files", "operator")
                             if data.get(k) is not None}
        if self.autonomy == "off":
            return {"experiment_id": None, "status": "ignored",
                    "reason": "autonomy is off: ctx.evolve is not acted upon"}
        if self.autonomy == "propose":
            return await self._propose(body)
        try:
            experiment, genome = await self._prepare(body)
        except ServiceError as exc:
            return {"experiment_id": None, "status": "rejected", "reason": str(exc)}
        # The main waits for this answer inside its handler, so it cannot send the
        # checkpoint taken before risk until we answer: launch in the background.
        self._spawn(self._launch_quietly(experiment, genome))
        return {"experiment_id": experiment.id, "status": RUNNING, "reason": ""}

    async def _propose(self, body: dict[str, Any]) -> dict[str, Any]:
        try:
            spec = ExperimentSpec.from_body(body)
            baseline = await asyncio.to_thread(Genome.from_path, self.host.config.agent)
            genome, operator = self._make_genome(spec, baseline)
        except (ProjectOError, TypeError) as exc:
            return {"experiment_id": None, "status": "rejected", "reason": str(exc)}
        # Pin the concrete candidate, so approving starts exactly what was proposed.
        body = {**body, "candidate": {"files": dict(genome.sources)},
                "params": dict(genome.params)}
        catalog = self.vault.catalog
        await asyncio.to_thread(catalog.add_version, **{**genome.to_record(), "status": PROPOSED})
        record = await asyncio.to_thread(
            catalog.add_experiment, body["kind"], genome.id, baseline_version=self.host.version,
            stage="validating", status=PROPOSED, stats={"body": body, "operator": operator})
        self.events.record("experiment_proposed", record.id, body.get("hypothesis", ""))
        return {"experiment_id": record.id, "status": PROPOSED,
                "reason": "waiting for POST /v1/evolution/experiments/{id}/approve"}

    # -- creating ----------------------------------------------------------

    async def _prepare(self, body: dict[str, Any], *,
                       experiment_id: str | None = None) -> tuple[Experiment, Genome]:
        if self.current is not None:
            raise ExperimentConflict(
                f"experiment {self.current.id} is running ({self.current.stage}); wait for "
                "it to finish (GET /v1/evolution/experiments/{id})")
        try:
            spec = ExperimentSpec.from_body(body)
        except (InvalidArgument, TypeError) as exc:
            raise CandidateInvalid(f"invalid experiment: {exc}") from exc
        baseline = await asyncio.to_thread(Genome.from_path, self.host.config.agent)
        # In a thread: the LLM rewrite operator waits on a model over HTTP.
        genome, operator = await asyncio.to_thread(self._make_genome, spec, baseline)
        experiment = Experiment(experiment_id or uuid.uuid4().hex, spec, genome.id,
                                self.host.version, operator=operator)
        if self.current is not None:  # another create got here during the await
            raise ExperimentConflict(f"experiment {self.current.id} is running")
        self.current = experiment
        self._experiments[experiment.id] = experiment
        await asyncio.to_thread(self._record_start, experiment, genome, experiment_id is not None)
        experiment.event("created", f"{operator} candidate {genome.id} against "
                         f"{self.host.version}: {spec.hypothesis or 'no hypothesis given'}")
        result = validate(genome)
        if not result:
            await self._finish(experiment, _Verdict("rejected", "reject",
                                                    f"failed validation ({result.stage}): "
                                                    f"{result.reason}"))
            raise CandidateInvalid(experiment.reason)
        return experiment, genome

    def _make_genome(self, spec: ExperimentSpec, base: Genome) -> tuple[Genome, str]:
        params = None if spec.params is None else {**base.params, **spec.params}
        candidate = spec.candidate
        if "source" in candidate:
            name = "__init__.py" if base.is_package else next(iter(base.sources))
            return base.derive(operator="user", sources={**base.sources, name: candidate["source"]},
                               params=params), "user"
        if "files" in candidate:
            return base.derive(operator="user", sources={**base.sources, **candidate["files"]},
                               params=params), "user"
        if "operator" not in candidate:
            return base.derive(operator="user", params=params), "user"
        name = str(candidate["operator"])
        if name != "auto":
            return self._apply_operator(name, base, spec), name
        # "auto": the bandit's choices in turn, until one applies to this code
        # (crossover needs donors, statement deletion needs two statements...).
        untried = dict(self._operators)
        while untried:
            name = self.bandit.choose(self.rng, among=untried)
            del untried[name]
            with contextlib.suppress(CandidateInvalid):
                return self._apply_operator(name, base, spec), name
        raise CandidateInvalid("no mutation operator applies to the serving version")

    def _apply_operator(self, name: str, base: Genome, spec: ExperimentSpec) -> Genome:
        operator = self._operators.get(name)
        if operator is None:
            raise CandidateInvalid(f"unknown operator {name!r}; known: {sorted(self._operators)} "
                                   "or 'auto'")
        if isinstance(operator, LLMRewrite):  # tell the model why, and what went wrong lately
            operator = LLMRewrite(operator.client, self._brief(spec.hypothesis))
        child = operator.apply(base, self.rng)
        if child is None:
            self._learn(name, success=False)
            raise CandidateInvalid(f"operator {name} made no candidate: "
                                   f"{getattr(operator, 'last_reason', '')}")
        return child

    def _brief(self, hypothesis: str | None) -> RewriteBrief:
        """The LLM's brief: the hypothesis, this version's health, recent failures.

        Built from our own records only: never the environment or secrets.
        """
        failures = [f"{e['kind']}: {e['reason']}" for e in self.events.recent(50)
                    if e["kind"] in ("crash", "hang", "quarantine")][-10:]
        return RewriteBrief(hypothesis or "", self.monitor.health(self.host.version), failures)

    def _record_start(self, experiment: Experiment, genome: Genome, exists: bool) -> None:
        catalog = self.vault.catalog
        catalog.add_version(**genome.to_record(), status="candidate",
                            reason=f"under test in experiment {experiment.id}")
        if exists:
            catalog.update_experiment(experiment.id, status=RUNNING, stage=experiment.stage,
                                      stats=experiment.stats())
            return
        catalog.add_experiment(experiment.spec.kind, genome.id,
                               baseline_version=experiment.baseline_version,
                               stage=experiment.stage, stats=experiment.stats(),
                               experiment_id=experiment.id)

    async def _launch(self, experiment: Experiment, genome: Genome) -> None:
        """Checkpoint, start the candidate's zygote (import = validation stage 2), run."""
        try:
            await self._checkpoint(experiment)
            path = await asyncio.to_thread(
                genome.write_to, self.vault.path / "versions" / genome.id)
            candidate = CandidateHost(self.host, self._on_candidate_failure)
            try:
                await candidate.start(path, genome.id)
            except AgentLoadError as exc:
                await candidate.close()
                raise _Verdict("rejected", "reject", f"failed to import in its zygote: {exc}")
            failed = await run_quick_checks(path)
            if failed is not None:
                await candidate.close()
                raise _Verdict("rejected", "reject", failed)
        except _Verdict as verdict:
            await self._finish(experiment, verdict)
            raise CandidateInvalid(verdict.reason) from None
        except BaseException as exc:
            await self._finish(experiment, _Verdict("rejected", "reject",
                                                    f"could not start the candidate: {exc}"))
            raise
        experiment.event("validated", "compiles, params fit, imports in its own zygote, "
                         "passes its quick checks")
        self._candidate, self._failure = candidate, None
        self._task = asyncio.create_task(self._run(experiment, candidate, path),
                                         name=f"experiment-{experiment.id}")

    async def _launch_quietly(self, experiment: Experiment, genome: Genome) -> None:
        with contextlib.suppress(ServiceError):
            await self._launch(experiment, genome)

    async def _checkpoint(self, experiment: Experiment) -> None:
        main = self.host.main
        if main is None or not main.alive:
            raise _Verdict("rejected", "reject", "no main instance to checkpoint before risk")
        await self.host.request_checkpoint(main, CHECKPOINT_TIMEOUT)
        experiment.event("checkpoint", f"state checkpointed and acknowledged "
                         f"({self.host.last_checkpoint})")

    # -- running -----------------------------------------------------------

    async def _run(self, experiment: Experiment, candidate: CandidateHost, path: Path) -> None:
        verdict: _Verdict
        try:
            if experiment.spec.kind == SHADOW:
                await self._shadow(experiment, candidate)
            await self._canary(experiment, candidate)
            verdict = await self._promote(experiment, candidate, path)
        except _Verdict as decided:
            verdict = decided
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a bug here must not touch the baseline
            verdict = _Verdict("rejected", "reject", f"arbiter error: {type(exc).__name__}: {exc}")
        await self._wind_down(experiment, candidate, verdict)

    async def _shadow(self, experiment: Experiment, candidate: CandidateHost) -> None:
        experiment.new_stage("shadow", f"{experiment.spec.mode} mode, share "
                             f"{experiment.spec.share:g}")
        await candidate.spawn(SHADOW)
        minimum = experiment.spec.min_samples
        await self._wait(experiment, "shadow", lambda: min(experiment.stage_samples.values())
                         >= minimum)
        experiment.event("passed", f"shadow passed after {minimum} samples per arm: "
                         f"{experiment.describe_tests()}")

    async def _canary(self, experiment: Experiment, candidate: CandidateHost) -> None:
        stages = experiment.spec.stages
        gate = max((i for i, s in enumerate(stages) if s < 1.0), default=len(stages) - 1)
        self.host.checkpoints_paused = True  # the canary journals into the same WAL
        first = True
        for index, share in enumerate(stages):
            experiment.new_stage(f"canary-{round(share * 100)}", f"{share:.0%} of real traffic")
            if first:
                await candidate.spawn(CANARY)
                first = False
            minimum = experiment.spec.min_samples
            await self._wait(experiment, "canary", lambda share=share, minimum=minimum: (
                experiment.stage_samples[CANDIDATE] >= minimum
                and (share >= 1.0 or experiment.stage_samples[BASELINE] >= minimum)))
            if index == gate:
                await self._gate(experiment)

    async def _gate(self, experiment: Experiment) -> None:
        """Stay at this share until a metric is better, or give up: no improvement."""
        await self._wait(experiment, "canary",
                         lambda: bool(experiment.better()) or experiment.no_improvement())
        better = experiment.better()
        if better:
            experiment.event("better", f"better on {', '.join(better)}: "
                             f"{experiment.describe_tests()}")
        elif experiment.spec.promote_equal:
            experiment.event("equal", f"no difference found; promote_equal is set: "
                             f"{experiment.describe_tests()}")
        else:
            raise _Verdict("rejected", "reject", "no improvement after "
                           f"{experiment.samples[CANDIDATE]} candidate samples: "
                           f"{experiment.describe_tests()}")

    async def _wait(self, experiment: Experiment, where: str, done: Any) -> None:
        """Until ``done()``; a guardrail or a worse metric ends the experiment at once."""
        while True:
            self._check(experiment, where)
            if done():
                return
            self._wake.clear()
            await self._wake.wait()

    def _check(self, experiment: Experiment, where: str) -> None:
        fail = ("rejected", "reject") if where == "shadow" else ("rolled_back", "rollback")
        if self._failure is not None:
            raise _Verdict(*fail, f"died in the {where}: {self._failure}")
        worse = experiment.worse()
        if worse is not None:
            raise _Verdict(*fail, f"worse on {worse} in the {where}: "
                           f"{experiment.describe_tests()}")
        errors = experiment.tests.get("errors")
        if errors is not None:
            n = errors.summary()["n"][CANDIDATE]
            rate = errors.summary()["mean"][CANDIDATE]
            if n >= GUARDRAIL_MIN_SAMPLES and rate > ERROR_RATE_LIMIT:
                raise _Verdict(*fail, f"error rate {rate:.0%} over the limit of "
                               f"{ERROR_RATE_LIMIT:.0%} in the {where} ({n} requests)")

    async def _promote(self, experiment: Experiment, candidate: CandidateHost,
                       path: Path) -> _Verdict:
        old_agent, old_version = self.host.config.agent, self.host.version
        experiment.new_stage("validation", "promoting: hot reload to the candidate")
        await self._drain(candidate)
        await candidate.close()
        self.host.trust(experiment.candidate_version)
        await asyncio.to_thread(self.vault.catalog.set_version_status,
                                experiment.candidate_version, "promoted",
                                f"promoted by experiment {experiment.id}")
        await self.host.reload(path, experiment.candidate_version,
                               f"promoted by experiment {experiment.id}")
        self.host.checkpoints_paused = False
        why = (f"better on {', '.join(experiment.better())}" if experiment.better()
               else "equal (promote_equal)")
        self._validation = {"requests": 0, "errors": 0}
        self._failure = None
        try:
            await self._wait_validation(experiment)
        except _Verdict as regression:
            await self.host.reload(old_agent, old_version, f"rolled back: {regression.reason}")
            raise
        return _Verdict("promoted", "promote", f"{why}; validated over "
                        f"{self._validation['requests']} requests: {experiment.describe_tests()}")

    async def _wait_validation(self, experiment: Experiment) -> None:
        wanted = experiment.spec.validation_requests
        baseline_rate = _baseline_error_rate(experiment)
        while True:
            if self._failure is not None:
                raise _Verdict("rolled_back", "rollback",
                               f"crashed after promotion: {self._failure}")
            count, errors = self._validation["requests"], self._validation["errors"]
            if count >= GUARDRAIL_MIN_SAMPLES and errors / count > baseline_rate + REGRESSION_MARGIN:
                raise _Verdict("rolled_back", "rollback",
                               f"regression after promotion: {errors} errors in {count} requests "
                               f"(baseline error rate {baseline_rate:.0%})")
            if count >= wanted:
                return
            self._wake.clear()
            await self._wake.wait()

    async def _drain(self, candidate: CandidateHost) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.host.config.request_deadline
        while (candidate.instance is not None and candidate.instance.alive
               and candidate.instance.in_flight and loop.time() < deadline):
            await asyncio.sleep(0.005)

    async def _wind_down(self, experiment: Experiment, candidate: CandidateHost,
                         verdict: _Verdict) -> None:
        was_canary = self.host.checkpoints_paused
        experiment.stage = "done"  # no more requests are routed to the candidate
        await self._drain(candidate)
        await candidate.close()
        if was_canary:
            # The main never applied the canary's writes: reload it from the vault.
            with contextlib.suppress(ProjectOError, OSError):
                await self.host.reload(self.host.config.agent, self.host.version,
                                       f"merge the writes of experiment {experiment.id}")
            self.host.checkpoints_paused = False
        await self._finish(experiment, verdict)

    async def _finish(self, experiment: Experiment, verdict: _Verdict) -> None:
        experiment.finish(verdict.status, verdict.decision, verdict.reason)
        if self.current is experiment:
            self.current = None
            self._candidate = None
        await asyncio.to_thread(self._record_end, experiment)
        self.events.record(f"experiment_{verdict.decision}", experiment.id, verdict.reason,
                           candidate=experiment.candidate_version,
                           baseline=experiment.baseline_version)
        if experiment.operator in self._operators:
            await asyncio.to_thread(self._learn, experiment.operator,
                                    verdict.status == "promoted")
        await self.host.send_to_main(Message("evolution_result", {
            "experiment_id": experiment.id, "status": verdict.status, "reason": verdict.reason,
        }))

    def _record_end(self, experiment: Experiment) -> None:
        catalog = self.vault.catalog
        catalog.update_experiment(experiment.id, stage="done", status=experiment.status,
                                  decision=experiment.decision, reason=experiment.reason,
                                  stats=experiment.stats())
        catalog.set_version_status(experiment.candidate_version, experiment.status,
                                   experiment.reason)

    # -- routing -----------------------------------------------------------

    async def submit(self, payload: Any, deadline_s: float | None, request_id: str | None,
                     on_event: EventSink | None) -> RequestResult:
        """Serve one request: by the main, or the candidate when its share says so."""
        experiment, candidate = self.current, self._candidate
        request_id = request_id or uuid.uuid4().hex
        stage = experiment.stage if experiment is not None else "none"
        if experiment is None or candidate is None or stage in ("validating", "done"):
            return await self._observed(self.host.submit(payload, deadline_s,
                                                         request_id=request_id,
                                                         on_event=on_event))
        if stage == "validation":
            return await self._serve_validation(payload, deadline_s, request_id, on_event)
        share = experiment.spec.share if stage == SHADOW else _stage_share(stage)
        to_candidate = on_event is None and self.rng.random() < share
        if stage != SHADOW or experiment.spec.mode == "split":
            if to_candidate:
                return await self._serve_candidate(experiment, candidate, payload, deadline_s,
                                                   request_id)
            return await self._serve_baseline(experiment, payload, deadline_s, request_id,
                                              on_event)
        if not to_candidate:
            return await self.host.submit(payload, deadline_s, request_id=request_id,
                                          on_event=on_event)
        # Sent at the same moment as the main's copy, so both arms see the same load.
        shadow = asyncio.create_task(self._ask_shadow(candidate, payload))
        try:
            result = await self._serve_baseline(experiment, payload, deadline_s, request_id,
                                                None)
        except BaseException:
            self._spawn(self._compare(experiment, candidate, shadow, _NO_ANSWER))
            raise
        self._spawn(self._compare(experiment, candidate, shadow, result.output))
        return result

    async def _serve_baseline(self, experiment: Experiment, payload: Any,
                              deadline_s: float | None, request_id: str,
                              on_event: EventSink | None) -> RequestResult:
        started = time.perf_counter()
        try:
            result = await self.host.submit(payload, deadline_s, request_id=request_id,
                                            on_event=on_event)
        except RequestFailed:
            self._sample(experiment, BASELINE, (time.perf_counter() - started) * 1000, True)
            raise
        self._sample(experiment, BASELINE, result.latency_ms, False)
        return result

    async def _serve_candidate(self, experiment: Experiment, candidate: CandidateHost,
                               payload: Any, deadline_s: float | None,
                               request_id: str) -> RequestResult:
        deadline = deadline_s or self.host.config.request_deadline
        started = time.perf_counter()
        try:
            output = await candidate.request(request_id, payload, deadline)
        except HandlerError as exc:
            self.host.remember(request_id, candidate.version)
            self._sample(experiment, CANDIDATE, (time.perf_counter() - started) * 1000, True)
            raise RequestFailed(exc.kind, exc.message, request_id=request_id,
                                traceback=exc.traceback) from exc
        except (InstanceDied, TimeoutError) as exc:
            if isinstance(exc, TimeoutError) and candidate.instance is not None:
                candidate.instance.kill(f"hang: request {request_id} got no answer in "
                                        f"{deadline:g} s")
            # The guardrail fires; the client's request is served by the main.
            return await self.host.submit(payload, deadline_s, request_id=request_id)
        seconds = time.perf_counter() - started
        self.host.remember(request_id, candidate.version)
        self._sample(experiment, CANDIDATE, seconds * 1000, False)
        self.host.metrics.observe_request(candidate.version, CANARY, "ok", seconds)
        return RequestResult(request_id, output, candidate.version, seconds * 1000)

    async def _ask_shadow(self, candidate: CandidateHost, payload: Any) -> tuple[Any, float]:
        """The shadow's answer and its latency in ms (raises what the request raises)."""
        started = time.perf_counter()
        output = await candidate.request(f"shadow-{uuid.uuid4().hex}", payload,
                                         self.host.config.request_deadline)
        return output, (time.perf_counter() - started) * 1000

    async def _compare(self, experiment: Experiment, candidate: CandidateHost,
                       shadow: asyncio.Task[tuple[Any, float]], expected: Any) -> None:
        """Fire-and-forget: the shadow's answer is compared with the main's, never returned."""
        started = time.perf_counter()
        try:
            output, latency_ms = await shadow
        except HandlerError:
            self._sample(experiment, CANDIDATE, (time.perf_counter() - started) * 1000, True)
            return
        except TimeoutError:
            if candidate.instance is not None:
                candidate.instance.kill("hang: no answer within the request deadline")
            return
        except InstanceDied:
            return  # the guardrail already fired (on_death)
        if experiment.stage == SHADOW and expected is not _NO_ANSWER:
            experiment.record_agreement(output == expected)
        self._sample(experiment, CANDIDATE, latency_ms, False)

    async def _serve_validation(self, payload: Any, deadline_s: float | None,
                                request_id: str, on_event: EventSink | None) -> RequestResult:
        try:
            result = await self.host.submit(payload, deadline_s, request_id=request_id,
                                            on_event=on_event)
        except RequestFailed:
            self._validated(error=True)
            raise
        self._validated(error=False)
        return result

    def _validated(self, *, error: bool) -> None:
        experiment = self.current
        if experiment is None or self.host.version != experiment.candidate_version:
            return  # served by the old version while the reload was under way
        self._validation["requests"] += 1
        self._validation["errors"] += int(error)
        self._wake.set()

    def _sample(self, experiment: Experiment, arm: str, latency_ms: float, error: bool) -> None:
        if experiment is self.current and experiment.stage not in ("validating", "done"):
            experiment.record(arm, latency_ms, error)
            self._wake.set()

    def on_feedback(self, version: str, score: float) -> None:
        """A user rated an answer of ``version``: a feedback sample for its arm."""
        if self.current is None:
            self._perceive(self.monitor.observe_feedback(version, score))
        experiment = self.current
        if experiment is None or experiment.stage in ("validating", "done", "validation"):
            return
        if version == experiment.candidate_version:
            experiment.record_feedback(CANDIDATE, score)
        elif version == experiment.baseline_version:
            experiment.record_feedback(BASELINE, score)
        self._wake.set()

    # -- perception ---------------------------------------------------------

    async def _observed(self, serving: Any) -> RequestResult:
        """Serve a request outside any experiment and let the monitor see how it went."""
        started = time.perf_counter()
        try:
            result: RequestResult = await serving
        except (RequestFailed, PoisonRequest, RequestTimeout):
            latency = (time.perf_counter() - started) * 1000
            self._perceive(self.monitor.observe(self.host.version, latency, error=True))
            raise
        self._perceive(self.monitor.observe(result.version, result.latency_ms))
        return result

    def _perceive(self, intents: Sequence[Intent]) -> None:
        """An intent from the monitor: record it, and act as autonomy allows."""
        for intent in intents:
            self.events.record("intent", intent.version, intent.hypothesis,
                               metric=intent.metric, observed=intent.observed,
                               threshold=intent.threshold, action=intent.action)
            if self.current is not None:
                continue  # one experiment at a time; the cooldown brings it back later
            body = {"kind": "shadow", "candidate": {"operator": "auto"},
                    "hypothesis": intent.hypothesis}
            self._spawn(self._act_on(body, propose=intent.action == "propose"))

    async def _act_on(self, body: dict[str, Any], *, propose: bool) -> None:
        try:
            outcome = await (self._propose(body) if propose else self.create(body))
        except ProjectOError as exc:  # no mutation applies, one is running...: say so
            self.events.record("intent_unanswered", self.host.version, str(exc))
            return
        self.events.record("intent_answered", self.host.version,
                           f"experiment {outcome.get('experiment_id') or outcome.get('id')} "
                           f"({outcome.get('status')})")

    # -- guardrails --------------------------------------------------------

    def _on_candidate_failure(self, reason: str) -> None:
        self._failure = self._failure or reason
        self._wake.set()

    def _on_event(self, event: dict[str, Any]) -> None:
        """A crash or hang of the promoted version during validation: roll back."""
        experiment = self.current
        if (experiment is not None and experiment.stage == "validation"
                and event.get("kind") in ("crash", "hang")
                and event.get("version") == experiment.candidate_version):
            self._on_candidate_failure(f"{event['kind']}: {event.get('reason')}")

    # -- learning ----------------------------------------------------------

    def _load_bandit(self) -> OperatorBandit:
        path = self.vault.path / BANDIT_FILE
        try:
            return OperatorBandit.load(json.loads(path.read_text()), names=self._operators)
        except (OSError, ValueError):
            return OperatorBandit(self._operators)

    def _learn(self, operator: str, success: bool) -> None:
        if operator not in self.bandit.names:
            self.bandit.add(operator)
        self.bandit.record(operator, success)
        write_atomic(self.vault.path / BANDIT_FILE, json.dumps(self.bandit.state()).encode())

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _stage_share(stage: str) -> float:
    """``canary-50`` -> 0.5."""
    return int(stage.rsplit("-", 1)[1]) / 100


def _baseline_error_rate(experiment: Experiment) -> float:
    errors = experiment.tests.get("errors")
    return float(errors.summary()["mean"][BASELINE]) if errors is not None else 0.0


def _summary(experiment: Experiment) -> dict[str, Any]:
    return {k: v for k, v in experiment.to_dict().items()
            if k in ("id", "kind", "candidate_version", "baseline_version", "stage", "status")}
