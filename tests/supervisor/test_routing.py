"""Routing policies: where each request goes, and the samples each one reports."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import pytest

from project_o.errors import RequestFailed
from project_o.evolution.stats import BASELINE, CANDIDATE
from project_o.supervisor.config import SupervisorConfig
from project_o.supervisor.experiment import Answered, Compared, Sample, Watched
from project_o.supervisor.routing import MainOnly, Mirror, Router, Split, Watch
from tests.supervisor.experiment_fakes import (
    BASE_VERSION,
    FakeCandidate,
    FakeClock,
    FakeHost,
    async_test,
)


def parts(tmp_path: Path, **candidate: Any) -> tuple[FakeHost, FakeCandidate, list[Sample]]:
    clock = FakeClock()
    host = FakeHost(SupervisorConfig(vault=tmp_path, agent=tmp_path / "a.py"), clock)
    failures: list[str] = []
    shadow = FakeCandidate(clock, failures.append, version="cand", **candidate)
    return host, shadow, []


@async_test
async def test_with_no_experiment_every_request_goes_to_the_main(tmp_path: Path) -> None:
    host, _, _ = parts(tmp_path)
    router = Router(host)
    results = [await router.submit({"n": n}) for n in range(20)]
    assert isinstance(router.policy, MainOnly)
    assert {r.version for r in results} == {BASE_VERSION}
    assert [r.output for r in results] == [{"n": n} for n in range(20)]
    assert len(host.served) == 20


@async_test
async def test_mirror_returns_the_mains_answer_and_compares_the_shadows(tmp_path: Path) -> None:
    host, shadow, samples = parts(tmp_path, behaviour="wrong")
    router = Router(host)
    async with asyncio.TaskGroup() as tasks:
        router.use(Mirror(host, shadow, share=1.0, deadline_s=5.0, rng=random.Random(1),
                          report=samples.append, tasks=tasks, clock=FakeClock()))
        results = [await router.submit({"n": n}) for n in range(10)]
    # The client always gets the main's answer, never the shadow's.
    assert [r.output for r in results] == [{"n": n} for n in range(10)]
    assert {r.version for r in results} == {BASE_VERSION}
    assert shadow.requests == 10
    assert samples.count(Compared(False)) == 10
    arms = [s.arm for s in samples if isinstance(s, Answered)]
    assert arms.count(BASELINE) == arms.count(CANDIDATE) == 10


@async_test
async def test_mirror_sends_only_its_share_and_never_a_streaming_request(tmp_path: Path) -> None:
    host, shadow, samples = parts(tmp_path)
    async with asyncio.TaskGroup() as tasks:
        mirror = Mirror(host, shadow, share=0.1, deadline_s=5.0, rng=random.Random(1),
                        report=samples.append, tasks=tasks)
        router = Router(host)
        router.use(mirror)
        for n in range(200):
            await router.submit({"n": n})
        await router.submit({"n": 0}, on_event=lambda event: None)
    assert 5 <= shadow.requests <= 40  # about one in ten, from the seeded rng
    assert samples.count(Compared(True)) == shadow.requests
    assert len(host.served) == 201


@async_test
async def test_split_gives_its_share_to_the_candidate_instead(tmp_path: Path) -> None:
    host, candidate, samples = parts(tmp_path)
    router = Router(host)
    router.use(Split(host, candidate, share=1.0, deadline_s=5.0, rng=random.Random(1),
                     report=samples.append))
    results = [await router.submit({"n": n}) for n in range(10)]
    assert {r.version for r in results} == {"cand"}
    assert [r.output for r in results] == [{"n": n} for n in range(10)]
    assert host.served == []  # the main never saw them
    assert all(isinstance(s, Answered) and s.arm == CANDIDATE for s in samples)
    # feedback on them names the candidate
    assert {host.answers.version_of(r.request_id) for r in results} == {"cand"}
    streamed = await router.submit({"n": 1}, on_event=lambda event: None)
    assert streamed.version == BASE_VERSION  # a candidate does not stream


@async_test
async def test_split_serves_from_the_main_when_the_candidate_dies(tmp_path: Path) -> None:
    host, candidate, samples = parts(tmp_path, behaviour="crash")
    router = Router(host)
    router.use(Split(host, candidate, share=1.0, deadline_s=5.0, rng=random.Random(1),
                     report=samples.append))
    results = [await router.submit({"n": n}) for n in range(3)]
    assert [r.version for r in results] == [BASE_VERSION] * 3
    assert [r.output for r in results] == [{"n": n} for n in range(3)]
    assert samples == []  # a death is the guardrail's business, not a latency sample


@async_test
async def test_split_reports_a_candidates_handler_error_to_the_client_and_the_experiment(
        tmp_path: Path) -> None:
    host, candidate, samples = parts(tmp_path, behaviour="error")
    router = Router(host)
    router.use(Split(host, candidate, share=1.0, deadline_s=5.0, rng=random.Random(1),
                     report=samples.append))
    with pytest.raises(RequestFailed):
        await router.submit({"n": 1})
    assert [(s.arm, s.error) for s in samples if isinstance(s, Answered)] == [(CANDIDATE, True)]


@async_test
async def test_watch_counts_only_what_the_watched_version_served(tmp_path: Path) -> None:
    host, _, samples = parts(tmp_path)
    router = Router(host)
    router.use(Watch(host, "cand", samples.append))
    await router.submit({"n": 1})  # still the old version: the reload is under way
    host.version = "cand"
    await router.submit({"n": 2})
    host.failing.add("cand")
    with pytest.raises(RequestFailed):
        await router.submit({"n": 3})
    assert samples == [Watched(False), Watched(True)]
    router.reset()
    assert isinstance(router.policy, MainOnly)
