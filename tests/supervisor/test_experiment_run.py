"""The experiment coroutine, driven with a fake host, a fake candidate and a fake clock.

No process, socket or sleep: requests go through the real router and its
policies into fakes; the verdict is what :meth:`ExperimentRun.run` returns.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from project_o.errors import RequestFailed
from project_o.evolution.genome import Genome
from project_o.supervisor.config import SupervisorConfig
from project_o.supervisor.experiment import Experiment, ExperimentSpec, Failed, Rated, Stage
from project_o.supervisor.experiment_run import ExperimentRun, ExperimentTools
from project_o.supervisor.routing import MainOnly, Router
from tests.supervisor.experiment_fakes import (
    BASE_VERSION,
    FakeCandidate,
    FakeClock,
    FakeHost,
    FakeLedger,
    async_test,
)

SOURCE = '''
from project_o import Agent

agent = Agent("fake")


@agent.handler
def handle(ctx, request):
    return {"n": request.get("n")}
'''
FAST = {"min_samples": 20, "max_samples": 200, "stages": [0.5, 1.0],
        "validation_requests": 20}
#: requests a test drives at most before it gives up on a verdict
LIMIT = 3000


class Rig:
    """One experiment run wired to fakes; :meth:`drive` sends requests until it decides."""

    def __init__(self, tmp_path: Path, body: dict[str, Any], *, source: str = SOURCE,
                 candidate_ms: float = 10.0, behaviour: str = "ok",
                 import_error: str | None = None, checks: str | None = None) -> None:
        self.clock = FakeClock()
        config = SupervisorConfig(vault=tmp_path / "vault", agent=tmp_path / "agent.py",
                                  request_deadline=5.0)
        self.host = FakeHost(config, self.clock)
        self.router = Router(self.host)
        self.ledger = FakeLedger()
        self.candidates: list[FakeCandidate] = []
        self.candidate_ms, self.behaviour, self.import_error = candidate_ms, behaviour, import_error
        self._checks = checks
        spec = ExperimentSpec.from_body({"candidate": {"source": source}, **body})
        genome = Genome({"agent.py": source}, {})
        self.experiment = Experiment("e1", spec, genome.id, BASE_VERSION, clock=self.clock)
        host = self.host
        tools = ExperimentTools(serving=host, pool=host, journal=host, reloads=host,
                                config=config, router=self.router,
                                new_candidate=self._new_candidate, ledger=self.ledger,
                                workdir=tmp_path / "versions", rng=random.Random(3),
                                quick_checks=self._quick_checks, clock=self.clock)
        self.run = ExperimentRun(self.experiment, genome, tools)
        self.stages: list[str] = []
        self.sent = 0

    def _new_candidate(self, on_failure: Callable[[str], None]) -> FakeCandidate:
        candidate = FakeCandidate(self.clock, on_failure, latency_ms=self.candidate_ms,
                                  behaviour=self.behaviour, import_error=self.import_error,
                                  watch=lambda: (self.experiment.stage_name,
                                                 self.experiment.status))
        self.candidates.append(candidate)
        return candidate

    async def _quick_checks(self, path: Path) -> str | None:
        return self._checks

    async def drive(self, *, after_promotion: Callable[[Rig], None] | None = None,
                    **extra: Any) -> Any:
        """Start the run, then send requests (as clients would) until it returns."""
        task = asyncio.create_task(self.run.run())
        # Launching writes the genome in a thread (fsync): requests before it prove nothing.
        await self.run.launched
        promoted = False
        for _ in range(LIMIT):
            if task.done():
                return task.result()
            self.sent += 1
            try:
                await self.router.submit({"n": self.sent, **extra})
            except RequestFailed:
                pass  # the client got an error; the experiment counted it
            self.stages.append(self.experiment.stage_name)
            if (not promoted and after_promotion is not None
                    and self.host.version == self.experiment.candidate_version):
                promoted = True
                after_promotion(self)
        task.cancel()
        raise AssertionError(f"no verdict after {LIMIT} requests: {self.experiment.to_dict()}")

    @property
    def candidate(self) -> FakeCandidate:
        return self.candidates[-1]


@async_test
async def test_a_faster_candidate_goes_shadow_canary_promotion_and_is_promoted(
        tmp_path: Path) -> None:
    rig = Rig(tmp_path, {"kind": "shadow", "share": 1.0, **FAST}, candidate_ms=5.0)
    verdict = await rig.drive()
    assert verdict.status == "promoted", verdict.reason
    assert verdict.reason.startswith("better on latency"), verdict.reason
    assert "validated over 20 requests" in verdict.reason
    timeline = [e["stage"] for e in rig.experiment.timeline]
    assert timeline.index("shadow") < timeline.index("canary-50") < timeline.index("canary-100")
    assert "validation" in timeline
    assert rig.candidate.roles == ["shadow", "canary"]
    assert rig.host.version == rig.experiment.candidate_version
    assert rig.host.answers.trusted == [rig.experiment.candidate_version]
    assert rig.ledger.promotions == [rig.experiment.candidate_version]
    assert rig.ledger.verdicts == [verdict]
    # The checkpoint before risk came first; the canary's writes were applied before the
    # hot reload, and only then was the candidate closed.
    events = [e["event"] for e in rig.experiment.timeline]
    assert events[:2] == ["checkpoint", "validated"] and events[-1] == "promote"
    assert rig.candidate.writes_settled == [("promoted", "promoted by experiment e1")]
    assert f"the canary's {rig.candidate.canary_writes} writes applied" in " ".join(
        e["detail"] for e in rig.experiment.timeline)
    assert rig.experiment.stage is Stage.DONE and rig.candidate.closed
    assert isinstance(rig.router.policy, MainOnly)
    assert rig.run.launched.result() is None and rig.run.validated.result() is None


@async_test
async def test_a_candidate_crashing_in_the_shadow_is_rejected_and_never_serves(
        tmp_path: Path) -> None:
    rig = Rig(tmp_path, {"kind": "shadow", "share": 1.0, **FAST}, behaviour="crash")
    verdict = await rig.drive()
    assert verdict.status == "rejected"
    assert verdict.reason == "died in the shadow: EOF on the socket; exit code 3"
    assert rig.candidate.roles == ["shadow"]
    assert rig.host.version == BASE_VERSION and rig.host.reloads_done == []
    assert not any(stage.startswith("canary") for stage in rig.stages)
    assert isinstance(rig.router.policy, MainOnly) and rig.candidate.closed
    # Decided: the stage says "done" while the candidate stops; the status follows.
    assert rig.candidate.seen_at_close[0] == ("done", "running")
    assert rig.experiment.to_dict()["status"] == "rejected"


@async_test
async def test_wrong_answers_in_the_mirror_are_rejected_on_agreement(tmp_path: Path) -> None:
    rig = Rig(tmp_path, {"kind": "shadow", "share": 1.0, **FAST}, behaviour="wrong")
    verdict = await rig.drive()
    assert verdict.status == "rejected"
    assert verdict.reason.startswith("worse on agreement in the shadow"), verdict.reason
    assert rig.experiment.agreement["same"] == 0 and rig.experiment.agreement["different"] > 0


@async_test
async def test_a_slower_candidate_is_rolled_back_in_the_canary_and_its_writes_quarantined(
        tmp_path: Path) -> None:
    rig = Rig(tmp_path, {"kind": "canary", **FAST}, candidate_ms=20.0)
    verdict = await rig.drive()
    assert verdict.status == "rolled_back"
    assert verdict.reason.startswith("worse on latency in the canary"), verdict.reason
    assert "canary-100" not in rig.stages
    # The main's memory never took the canary's writes, so it is not reloaded either.
    assert rig.host.reloads_done == []
    assert rig.candidate.writes_settled == [("quarantined", f"rolled_back: {verdict.reason}")]
    quarantined = [e for e in rig.experiment.timeline if e["event"] == "quarantined"]
    assert len(quarantined) == 1 and "vault quarantine VAULT --apply o1" in quarantined[0]["detail"]


@async_test
async def test_an_equal_candidate_is_rejected_for_no_improvement(tmp_path: Path) -> None:
    rig = Rig(tmp_path, {"kind": "canary", **FAST, "max_samples": 60})
    verdict = await rig.drive()
    assert verdict.status == "rejected"
    assert verdict.reason.startswith("no improvement after"), verdict.reason
    assert rig.host.version == BASE_VERSION


@async_test
async def test_an_equal_candidate_is_promoted_when_promote_equal_is_set(tmp_path: Path) -> None:
    rig = Rig(tmp_path, {"kind": "canary", "promote_equal": True,
                         **FAST, "max_samples": 60})
    verdict = await rig.drive()
    assert verdict.status == "promoted", verdict.reason
    assert verdict.reason.startswith("equal (promote_equal)")


@async_test
async def test_a_regression_after_promotion_rolls_back_to_the_baseline(tmp_path: Path) -> None:
    rig = Rig(tmp_path, {"kind": "canary", **FAST}, candidate_ms=5.0)

    def start_failing(rig: Rig) -> None:
        rig.host.failing.add(rig.experiment.candidate_version)

    verdict = await rig.drive(after_promotion=start_failing)
    assert verdict.status == "rolled_back"
    assert verdict.reason.startswith("regression after promotion: 10 errors in 10 requests")
    assert [r[0] for r in rig.host.reloads_done] == [rig.experiment.candidate_version, BASE_VERSION]
    assert rig.host.reloads_done[1][1].startswith("rolled back: regression after promotion")


@async_test
async def test_a_crash_of_the_promoted_version_rolls_back(tmp_path: Path) -> None:
    rig = Rig(tmp_path, {"kind": "canary", **FAST}, candidate_ms=5.0)

    def crash(rig: Rig) -> None:
        rig.run.offer(Failed("crash: killed by signal 9"))

    verdict = await rig.drive(after_promotion=crash)
    assert verdict.status == "rolled_back"
    assert verdict.reason == "crashed after promotion: crash: killed by signal 9"
    assert rig.host.version == BASE_VERSION


@async_test
async def test_feedback_samples_decide_an_experiment_judged_on_feedback(tmp_path: Path) -> None:
    rig = Rig(tmp_path, {"kind": "shadow", "mode": "split", "share": 0.5, "metric": "feedback",
                         **FAST})
    task = asyncio.create_task(rig.run.run())
    await rig.run.launched
    for _ in range(30):
        rig.run.offer(Rated(rig.experiment.candidate_version, -1.0))
        rig.run.offer(Rated(BASE_VERSION, 1.0))
        rig.run.offer(Rated("some-other-version", 1.0))  # neither arm: ignored
    verdict = await task
    assert verdict.status == "rejected"
    assert verdict.reason.startswith("worse on feedback in the shadow"), verdict.reason
    counted = rig.experiment.tests["feedback"].summary()["n"]
    assert counted["baseline"] == counted["candidate"] >= rig.experiment.spec.min_samples


@async_test
async def test_a_candidate_that_does_not_import_is_rejected_before_it_serves(
        tmp_path: Path) -> None:
    rig = Rig(tmp_path, {"kind": "shadow", **FAST}, import_error="no such model")
    verdict = await rig.run.run()
    assert verdict.reason == "failed to import in its zygote: no such model"
    assert rig.run.launched.result() == verdict and rig.run.validated.result() is None
    assert rig.candidate.roles == [] and rig.candidate.closed


@async_test
async def test_a_candidate_failing_its_quick_checks_is_rejected(tmp_path: Path) -> None:
    rig = Rig(tmp_path, {"kind": "shadow", **FAST}, checks="failed its quick checks: x")
    verdict = await rig.run.run()
    assert (verdict.status, verdict.reason) == ("rejected", "failed its quick checks: x")


@async_test
async def test_a_candidate_that_does_not_compile_is_rejected_at_validation(
        tmp_path: Path) -> None:
    rig = Rig(tmp_path, {"kind": "shadow", **FAST}, source="def f(:\n")
    verdict = await rig.run.run()
    assert verdict.status == "rejected" and verdict.reason.startswith("failed validation")
    assert rig.run.validated.result() == verdict
    assert rig.candidates == [] and rig.host.last_checkpoint is None


@async_test
async def test_no_main_to_checkpoint_means_no_experiment(tmp_path: Path) -> None:
    rig = Rig(tmp_path, {"kind": "shadow", **FAST})
    rig.host.main = None
    verdict = await rig.run.run()
    assert verdict.reason == "no main instance to checkpoint before risk"
    assert rig.candidates == []


@async_test
async def test_a_cancelled_run_records_nothing_and_stops_the_candidate(tmp_path: Path) -> None:
    rig = Rig(tmp_path, {"kind": "shadow", "share": 1.0, **FAST})
    task = asyncio.create_task(rig.run.run())
    await rig.run.launched
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert rig.ledger.verdicts == [] and rig.candidate.closed
    assert isinstance(rig.router.policy, MainOnly)


@async_test
async def test_a_failing_comparison_task_reaches_the_experiment_that_owns_it(
        tmp_path: Path) -> None:
    rig = Rig(tmp_path, {"kind": "shadow", "share": 1.0, **FAST}, behaviour="bug")
    verdict = await rig.drive()
    assert verdict.status == "rejected"
    assert verdict.reason == "experiment error: ValueError: a bug on the way to the candidate"
    assert isinstance(rig.router.policy, MainOnly) and rig.candidate.closed
    assert rig.ledger.verdicts == [verdict]
