"""Evolution control on a fake host and a fake candidate, with a real vault and catalog.

Who may start an experiment (the API, ctx.evolve, perception), one at a
time, and what is written down when it ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from project_o.errors import CandidateInvalid, ExperimentConflict
from project_o.evolution.genome import Genome
from project_o.evolution.perception import Thresholds
from project_o.supervisor.config import SupervisorConfig
from project_o.supervisor.events import EventLog
from project_o.supervisor.evolution_control import EvolutionControl
from project_o.supervisor.routing import Router
from project_o.vault import Vault
from project_o.wire import Message
from tests.supervisor.experiment_fakes import (
    GUARD_S,
    FakeCandidate,
    FakeClock,
    FakeHost,
    async_test,
)

AGENT = '''
from project_o import Agent

agent = Agent("tuned")
delay = agent.param("delay_ms", 20.0, low=0.0, high=50.0)


@agent.handler
def handle(ctx, request):
    return {"n": request.get("n")}
'''
FAST = {"min_samples": 20, "max_samples": 200, "stages": [0.5, 1.0],
        "validation_requests": 20}


class Setup:
    def __init__(self, host: FakeHost, vault: Vault, events: EventLog,
                 control: EvolutionControl, router: Router) -> None:
        self.host, self.vault, self.events, self.control = host, vault, events, control
        self.router = router
        self.behaviour = "ok"
        self.import_error: str | None = None
        self.candidates: list[FakeCandidate] = []

    def new_candidate(self, on_failure: Callable[[str], None]) -> FakeCandidate:
        candidate = FakeCandidate(self.host.clock, on_failure, behaviour=self.behaviour,
                                  import_error=self.import_error)
        self.candidates.append(candidate)
        return candidate

    def next_event(self, kind: str) -> asyncio.Future[dict[str, Any]]:
        """A future for the next event of ``kind`` (awaited, never polled for)."""
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

        def seen(event: dict[str, Any]) -> None:
            if event["kind"] == kind and not future.done():
                future.set_result(event)

        self.events.subscribe(seen)
        return future

    def told(self) -> asyncio.Future[dict[str, Any]]:
        """A future for the next message the experiment sends the main."""
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

        async def tell_main(message: Message) -> bool:
            if not future.done():
                future.set_result(dict(message.data))
            return True

        self.host.tell_main = tell_main  # type: ignore[method-assign]
        return future

    async def drive_until(self, decided: asyncio.Future[dict[str, Any]]) -> dict[str, Any]:
        """Send requests while the experiment runs, then wait for its verdict's event.

        The verdict is written in threads (SQLite commits): no request is needed for it.
        """
        run = self.control.current
        assert run is not None
        for n in range(2000):
            if not run.experiment.running:
                return await asyncio.wait_for(decided, GUARD_S)
            await self.router.submit({"n": n})
        raise AssertionError(f"no verdict after 2000 requests: {run.experiment.to_dict()}")


@asynccontextmanager
async def setup(tmp_path: Path, *, autonomy: str = "auto",
                thresholds: Thresholds | None = None) -> AsyncIterator[Setup]:
    tmp_path.mkdir(exist_ok=True)
    agent = tmp_path / "agent.py"
    agent.write_text(AGENT)
    config = SupervisorConfig(vault=tmp_path / "vault", agent=agent, autonomy=autonomy)
    vault = await asyncio.to_thread(Vault.open, config.vault)
    events = EventLog(vault.catalog)
    baseline = Genome.from_path(agent)
    vault.catalog.add_version(**baseline.to_record(), status="good")
    host = FakeHost(config, FakeClock(), version=baseline.id)
    router = Router(host)
    control = EvolutionControl(host, vault, events, router, autonomy=autonomy,  # type: ignore[arg-type]
                               thresholds=thresholds)
    made = Setup(host, vault, events, control, router)
    control.tools.new_candidate = made.new_candidate
    control.tools.quick_checks = no_checks
    await control.start()
    try:
        yield made
    finally:
        await control.stop()
        events.close()
        vault.close()


async def no_checks(path: Path) -> str | None:
    return None


def body(**extra: Any) -> dict[str, Any]:
    return {"kind": "shadow", "share": 1.0, "candidate": {"source": AGENT + "\n# v2\n"},
            **FAST, **extra}


@async_test
async def test_one_experiment_at_a_time_and_its_verdict_is_written_down(tmp_path: Path) -> None:
    async with setup(tmp_path) as s:
        s.behaviour = "crash"
        decided = s.next_event("experiment_reject")
        created = await s.control.create(body())
        assert created["status"] == "running"
        with pytest.raises(ExperimentConflict):
            await s.control.create(body())
        told = s.told()
        event = await s.drive_until(decided)
        assert event["reason"].startswith("died in the shadow")
        result = await asyncio.wait_for(told, GUARD_S)  # the last step of a run
        assert result == {"experiment_id": created["id"], "status": "rejected",
                          "reason": event["reason"]}
        record = s.vault.catalog.get_experiment(created["id"])
        assert record is not None and (record.status, record.decision) == ("rejected", "reject")
        assert record.stage == "done" and record.reason == event["reason"]
        version = s.vault.catalog.get_version(created["candidate_version"])
        assert version is not None and version.status == "rejected"
        shown = await s.control.ledger.get(created["id"])
        assert shown["status"] == "rejected" and shown["timeline"][0]["event"] == "created"
        s.behaviour = "ok"
        again = await s.control.create(body())  # no longer busy
        assert again["status"] == "running"


@async_test
async def test_a_candidate_that_does_not_import_is_refused_with_the_reason(
        tmp_path: Path) -> None:
    async with setup(tmp_path) as s:
        s.import_error = "no such model"
        with pytest.raises(CandidateInvalid, match="failed to import in its zygote"):
            await s.control.create(body())
        listed = (await s.control.ledger.list())["experiments"]
        assert [e["status"] for e in listed] == ["rejected"]
        with pytest.raises(CandidateInvalid, match="invalid experiment"):
            await s.control.create({"kind": "sideways", "candidate": {"source": AGENT}})


@async_test
async def test_ctx_evolve_is_answered_as_autonomy_allows(tmp_path: Path) -> None:
    async with setup(tmp_path, autonomy="off") as s:
        answer = await s.control.on_intent({"hypothesis": "h", "source": AGENT})
        assert answer["status"] == "ignored"
    async with setup(tmp_path / "auto") as s:
        broken = await s.control.on_intent({"hypothesis": "h", "source": "def f(:\n"})
        assert broken["status"] == "rejected" and "failed validation" in broken["reason"]
        started = await s.control.on_intent({"hypothesis": "h", "source": AGENT + "# v3\n"})
        assert started["status"] == "running" and started["experiment_id"]
        shown = await s.control.ledger.get(started["experiment_id"])
        assert shown["hypothesis"] == "h"
        # The agent wrote this code itself: the version says so, not "user".
        assert shown["operator"] == "agent"
        version = s.vault.catalog.get_version(shown["candidate_version"])
        assert version is not None and version.operator == "agent"


@async_test
async def test_a_proposal_the_agent_made_stays_the_agents_when_approved(tmp_path: Path) -> None:
    async with setup(tmp_path, autonomy="propose") as s:
        proposed = await s.control.on_intent({"hypothesis": "h", "source": AGENT + "# v4\n"})
        assert proposed["status"] == "proposed"
        approved = await s.control.approve(proposed["experiment_id"])
        shown = await s.control.ledger.get(approved["id"])
        assert shown["operator"] == "agent"


@async_test
async def test_perception_watches_the_metrics_and_proposes_an_experiment(tmp_path: Path) -> None:
    thresholds = Thresholds(p95_latency_ms=5.0)
    async with setup(tmp_path, autonomy="propose", thresholds=thresholds) as s:
        proposed = s.next_event("experiment_proposed")
        for _ in range(60):  # what the host counts for each answered request: 20 ms each
            s.host.metrics.observe_request(s.host.version, "main", "ok", 0.020)
        intents = [e for e in s.events.recent() if e["kind"] == "intent"]
        assert len(intents) == 1 and "slow" in intents[0]["reason"]
        experiment_id = (await asyncio.wait_for(proposed, GUARD_S))["subject"]
        approved = await s.control.approve(experiment_id)
        assert approved["status"] == "running"
        for _ in range(60):  # an experiment routes traffic: its requests are its samples
            s.host.metrics.observe_request(s.host.version, "main", "ok", 0.020)
        assert len([e for e in s.events.recent() if e["kind"] == "intent"]) == 1


@async_test
async def test_feedback_reaches_the_running_experiment(tmp_path: Path) -> None:
    async with setup(tmp_path) as s:
        decided = s.next_event("experiment_reject")
        created = await s.control.create(body(mode="split", share=0.01, metric="feedback"))
        for _ in range(30):
            s.control.on_feedback(created["candidate_version"], -1.0)
            s.control.on_feedback(created["baseline_version"], 1.0)
        event = await asyncio.wait_for(decided, GUARD_S)
        assert event["reason"].startswith("worse on feedback in the shadow")
