"""The written record of experiments: catalog rows, events, the bandit, the main told.

::

    opened(experiment, genome)  catalog: version "candidate", experiment "running"
    proposed(body, genome, ...) catalog: version and experiment "proposed"
    promoted(experiment)        catalog: version "promoted" (before the hot reload)
    learn(experiment, verdict)  catalog: experiment stats, decision, reason; version status
                                event experiment_{decision}; the operator bandit learns;
                                evolution_result to the main
    abort_leftovers()           experiments a killed supervisor left "running": "aborted",
                                the overlays of its canaries: quarantined
    get(id) / list()            GET /v1/evolution/experiments[/{id}]: live, else the catalog

Catalog writes run in a thread (SQLite commits fsync); events are recorded
in the caller. What is written here is what the API, the lineage view and
the demo read back, so its shape is a contract.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Protocol

from project_o.errors import ProjectOError, UnknownExperiment
from project_o.evolution.genome import Genome
from project_o.supervisor.events import EventLog
from project_o.supervisor.experiment import Experiment, Verdict, record_to_dict
from project_o.supervisor.variation import Variation
from project_o.vault.catalog import Catalog
from project_o.vault.quarantine import Quarantine
from project_o.wire import Message

__all__ = ["ABORT_REASON", "PROPOSED", "RUNNING", "ExperimentLedger"]

#: statuses of experiments not finished; the finished ones are the verdicts'
RUNNING, PROPOSED = "running", "proposed"
ABORT_REASON = "supervisor restarted mid-experiment"


class _Main(Protocol):
    """Where the main is told (the host's :class:`~.instance_pool.InstancePool`)."""

    async def tell_main(self, message: Message) -> bool: ...


class ExperimentLedger:
    """Writes each step of an experiment where the API and the next supervisor find it."""

    def __init__(self, catalog: Catalog, events: EventLog, variation: Variation,
                 main: _Main, quarantine: Quarantine) -> None:
        self.catalog, self.events, self.variation, self.main = catalog, events, variation, main
        self.quarantine = quarantine
        #: the experiments this supervisor started, live (the catalog lags behind them)
        self.live: dict[str, Experiment] = {}

    def abort_leftovers(self) -> list[str]:
        """Mark experiments a previous supervisor left running as aborted (safe abort)."""
        aborted = []
        for record in self.catalog.list_experiments(status=RUNNING):
            self.catalog.update_experiment(record.id, status="aborted", decision="abort",
                                           stage="done", reason=ABORT_REASON)
            with contextlib.suppress(ProjectOError):
                self.catalog.set_version_status(record.candidate_version, "aborted",
                                                ABORT_REASON)
            self.events.record("experiment_aborted", record.id, ABORT_REASON,
                               candidate=record.candidate_version)
            aborted.append(record.id)
        for overlay in self.quarantine.settle_open(ABORT_REASON):
            self.events.record("writes_quarantined", overlay.experiment_id,
                               f"{overlay.writes} writes of a canary kept apart as "
                               f"{overlay.id}: {ABORT_REASON}", overlay=overlay.id)
        return aborted

    async def opened(self, experiment: Experiment, genome: Genome, *, approved: bool) -> None:
        """The experiment starts (``approved``: its "proposed" row exists already)."""
        self.live[experiment.id] = experiment
        await asyncio.to_thread(self._opened, experiment, genome, approved)

    def _opened(self, experiment: Experiment, genome: Genome, approved: bool) -> None:
        catalog = self.catalog
        catalog.add_version(**genome.to_record(), status="candidate",
                            reason=f"under test in experiment {experiment.id}")
        if approved:
            catalog.update_experiment(experiment.id, status=RUNNING,
                                      stage=experiment.stage_name, stats=experiment.stats())
            return
        catalog.add_experiment(experiment.spec.kind, genome.id,
                               baseline_version=experiment.baseline_version,
                               stage=experiment.stage_name, stats=experiment.stats(),
                               experiment_id=experiment.id)

    async def proposed(self, body: dict[str, Any], genome: Genome, operator: str,
                       baseline: str) -> str:
        """Record a proposed experiment (autonomy "propose"); returns its id."""
        catalog = self.catalog
        await asyncio.to_thread(catalog.add_version, **{**genome.to_record(), "status": PROPOSED})
        record = await asyncio.to_thread(
            catalog.add_experiment, body["kind"], genome.id, baseline_version=baseline,
            stage="validating", status=PROPOSED, stats={"body": body, "operator": operator})
        self.events.record("experiment_proposed", record.id, body.get("hypothesis", ""))
        return record.id

    async def promoted(self, experiment: Experiment) -> None:
        """The candidate is about to serve: its version is "promoted"."""
        await asyncio.to_thread(self.catalog.set_version_status, experiment.candidate_version,
                                "promoted", f"promoted by experiment {experiment.id}")

    async def learn(self, experiment: Experiment, verdict: Verdict) -> None:
        """The verdict: written, announced, learnt from, and told to the main."""
        await asyncio.to_thread(self._closed, experiment)
        self.events.record(f"experiment_{verdict.decision}", experiment.id, verdict.reason,
                           candidate=experiment.candidate_version,
                           baseline=experiment.baseline_version)
        await asyncio.to_thread(self.variation.learn, experiment.operator,
                                verdict.status == "promoted")
        await self.main.tell_main(Message("evolution_result", {
            "experiment_id": experiment.id, "status": verdict.status, "reason": verdict.reason,
        }))

    async def get(self, experiment_id: str) -> dict[str, Any]:
        """``GET /v1/evolution/experiments/{id}``."""
        live = self.live.get(experiment_id)
        if live is not None:
            return live.to_dict()
        record = await asyncio.to_thread(self.catalog.get_experiment, experiment_id)
        if record is None:
            raise UnknownExperiment(f"no experiment has the id {experiment_id!r}; list them "
                                    "with GET /v1/evolution/experiments")
        return record_to_dict(record)

    async def list(self) -> dict[str, Any]:
        """``GET /v1/evolution/experiments``: newest first."""
        records = await asyncio.to_thread(self.catalog.list_experiments)
        items = [self.live[r.id].to_dict() if r.id in self.live else record_to_dict(r)
                 for r in reversed(records)]
        return {"experiments": items}

    def _closed(self, experiment: Experiment) -> None:
        catalog = self.catalog
        catalog.update_experiment(experiment.id, stage="done", status=experiment.status,
                                  decision=experiment.decision, reason=experiment.reason,
                                  stats=experiment.stats())
        catalog.set_version_status(experiment.candidate_version, experiment.status,
                                   experiment.reason)
