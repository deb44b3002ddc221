"""The protected evolution cycle against a real supervisor: shadow, canary, promotion, rollback.

Small agents written to tmp files; every candidate is a text edit of BASE.
Each test drives a few hundred requests at most and checks that the client
never loses a request, memory written through any version survives, and
every decision is recorded with its reason.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from project_o.vault.catalog import Catalog
from tests.supervisor.harness import FAST_HEARTBEAT, Stack

BASE = """
import os
import time
from project_o import Agent

agent = Agent("evolving")
DELAY = 0.01


@agent.handler
def handle(ctx, request):
    if request.get("do") == "set":
        ctx.memory.set(request["key"], request["value"])
        return "ok"
    if request.get("do") == "get":
        return ctx.memory.get(request["key"])
    if request.get("do") == "evolve":
        return ctx.evolve("no sleep is faster", source=request["source"])
    time.sleep(DELAY)
    return {"n": request.get("n")}
"""

PLAIN = '    return {"n": request.get("n")}'
CRASHING = BASE.replace(PLAIN, "    os._exit(3)")
HANGING = BASE.replace(PLAIN, "    while True:\n        pass")
WRONG = BASE.replace(PLAIN, '    return {"n": -1}')
SLOWER = BASE.replace("DELAY = 0.01", "DELAY = 0.06")
FASTER = BASE.replace("DELAY = 0.01", "DELAY = 0.0")
REGRESSING = FASTER.replace(PLAIN, '    if request.get("phase") == 2:\n'
                            '        raise RuntimeError("regressed")\n' + PLAIN)
FINISHED = ("promoted", "rejected", "rolled_back", "aborted")
FAST_STATS = {"min_samples": 20, "max_samples": 200, "stages": [0.5, 1.0],
              "validation_requests": 20}


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    agent = tmp_path / "evolving_agent.py"
    agent.write_text(BASE)
    running = Stack(tmp_path / "vault", ["--agent", str(agent), *FAST_HEARTBEAT])
    yield running
    running.stop()


def start(stack: Stack, source: str, **body: Any) -> dict[str, Any]:
    assert stack.http is not None
    response = stack.http.post("/v1/evolution/experiments",
                               json={"candidate": {"source": source}, **body})
    assert response.status_code == 201, response.text
    reply: dict[str, Any] = response.json()
    assert reply["status"] == "running"
    return reply


def experiment(stack: Stack, experiment_id: str) -> dict[str, Any]:
    assert stack.http is not None
    response = stack.http.get(f"/v1/evolution/experiments/{experiment_id}")
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


class Driver:
    """Sends requests (every fifth a memory write) and remembers what was acknowledged."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.written: dict[str, int] = {}
        #: which version acknowledged each write (a canary's may be quarantined)
        self.written_by: dict[str, str] = {}
        self.sent = 0
        self.stages: set[str] = set()

    def one(self, **extra: Any) -> Any:
        self.sent += 1
        if self.sent % 5 == 0:
            key = f"k{self.sent}"
            response = self.stack.do("set", key=key, value=self.sent)
            assert response.status_code == 200, response.text
            self.written[key] = self.sent
            self.written_by[key] = response.json()["version"]
            return response
        response = self.stack.ask({"n": self.sent, **extra})
        return response

    def until_done(self, experiment_id: str, limit: int = 600, **extra: Any) -> dict[str, Any]:
        for _ in range(limit):
            response = self.one(**extra)
            assert response.status_code == 200, response.text  # the main loses nothing
            if self.sent % 5 == 1:
                state = experiment(self.stack, experiment_id)
                self.stages.add(state["stage"])
                if state["status"] in FINISHED:
                    return state
        state = experiment(self.stack, experiment_id)
        assert state["status"] in FINISHED, state
        return state

    def memory_intact(self, *, quarantined: str | None = None) -> None:
        """Every acknowledged write is in memory -- but those ``quarantined`` version made.

        A version rolled back in its canary leaves its writes out of the agent's
        memory, kept in the vault's quarantine: each one is there, none is lost.
        """
        kept = quarantined_writes(self.stack, quarantined) if quarantined else {}
        for key, value in self.written.items():
            response = self.stack.do("get", key=key)
            assert response.status_code == 200, response.text
            if self.written_by[key] == quarantined:
                assert response.json()["output"] is None, key
                assert kept[key] == value, key
            else:
                assert response.json()["output"] == value, key


def quarantined_writes(stack: Stack, version: str) -> dict[str, Any]:
    """key -> value of every memory_set the canary of ``version`` left quarantined."""
    assert stack.http is not None
    overlays = stack.http.get("/v1/quarantine").json()["overlays"]
    kept: dict[str, Any] = {}
    for overlay in overlays:
        if overlay["version"] == version:
            assert overlay["status"] == "quarantined", overlay
            shown = stack.http.get(f"/v1/quarantine/{overlay['id']}").json()["writes_shown"]
            kept.update({w["data"]["key"]: w["data"]["value"] for w in shown
                         if w["operation"] == "memory_set"})
    return kept


def serving(stack: Stack) -> str:
    assert stack.http is not None
    versions: dict[str, Any] = stack.http.get("/v1/versions").json()
    return str(versions["serving"])


def test_candidate_crashing_in_the_shadow_is_rejected_and_the_main_loses_nothing(
        stack: Stack) -> None:
    baseline = serving(stack)
    created = start(stack, CRASHING, kind="shadow", share=1.0, **FAST_STATS)
    driver = Driver(stack)
    final = driver.until_done(created["id"])
    assert final["status"] == "rejected"
    assert final["reason"].startswith("died in the shadow"), final["reason"]
    assert serving(stack) == baseline
    driver.memory_intact()
    events = [e["event"] for e in final["timeline"]]
    assert "checkpoint" in events and "reject" in events


def test_hanging_candidate_is_rejected(stack: Stack) -> None:
    created = start(stack, HANGING, kind="shadow", share=1.0, **FAST_STATS)
    driver = Driver(stack)
    final = driver.until_done(created["id"])
    assert final["status"] == "rejected"
    assert "hang" in final["reason"], final["reason"]
    driver.memory_intact()


def test_wrong_answers_are_rejected_in_the_shadow(stack: Stack) -> None:
    created = start(stack, WRONG, kind="shadow", share=1.0, **FAST_STATS)
    driver = Driver(stack)
    final = driver.until_done(created["id"])
    assert final["status"] == "rejected"
    assert "worse on agreement" in final["reason"], final["reason"]
    assert not any(stage.startswith("canary") for stage in driver.stages)


def test_slower_candidate_never_reaches_full_traffic(stack: Stack) -> None:
    baseline = serving(stack)
    created = start(stack, SLOWER, kind="canary", **FAST_STATS)
    driver = Driver(stack)
    final = driver.until_done(created["id"])
    assert final["status"] == "rolled_back"
    assert "worse on latency" in final["reason"], final["reason"]
    assert "canary-100" not in driver.stages
    assert serving(stack) == baseline
    # writes the canary acknowledged are kept, quarantined, not in the agent's memory
    driver.memory_intact(quarantined=created["candidate_version"])


def test_faster_candidate_is_promoted_through_the_canary(stack: Stack) -> None:
    created = start(stack, FASTER, kind="shadow", share=1.0, **FAST_STATS)
    driver = Driver(stack)
    final = driver.until_done(created["id"])
    assert final["status"] == "promoted", final["reason"]
    assert "better on latency" in final["reason"]
    assert serving(stack) == created["candidate_version"]
    stages = [e["stage"] for e in final["timeline"]]
    assert stages.index("shadow") < stages.index("canary-50") < stages.index("canary-100")
    driver.memory_intact()
    with Catalog.open(stack.vault / "catalog.sqlite") as catalog:
        record = catalog.get_experiment(created["id"])
        assert record is not None and record.decision == "promote" and record.reason
        version = catalog.get_version(created["candidate_version"])
        assert version is not None and version.status == "promoted"


def test_with_a_pool_of_mains_a_faster_candidate_is_promoted_and_every_main_serves_it(
        tmp_path: Path) -> None:
    agent = tmp_path / "evolving_agent.py"
    agent.write_text(BASE)
    stack = Stack(tmp_path / "vault", ["--agent", str(agent), "--instances", "2",
                                       *FAST_HEARTBEAT])
    try:
        created = start(stack, FASTER, kind="shadow", share=1.0, **FAST_STATS)
        driver = Driver(stack)
        final = driver.until_done(created["id"])
        assert final["status"] == "promoted", final["reason"]
        assert serving(stack) == created["candidate_version"]
        deadline = time.monotonic() + 60  # a guard while the tree refills the other slot
        mains: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            mains = [i for i in stack.status()["instances"] if i["role"] == "main"]
            if len(mains) == 2 and all(i["version"] == created["candidate_version"]
                                       for i in mains):
                break
            time.sleep(0.05)
        assert [i["version"] for i in mains] == [created["candidate_version"]] * 2, mains
        driver.memory_intact()
    finally:
        stack.stop()


def test_regression_after_promotion_rolls_back_with_memory_intact(stack: Stack) -> None:
    baseline = serving(stack)
    created = start(stack, REGRESSING, kind="canary",
                    **{**FAST_STATS, "validation_requests": 60})
    driver = Driver(stack)
    for _ in range(600):  # until it is promoted and under watch
        assert driver.one().status_code == 200
        if serving(stack) == created["candidate_version"]:
            break
    assert serving(stack) == created["candidate_version"]
    for _ in range(200):  # now it starts failing
        driver.one(phase=2)
        state = experiment(stack, created["id"])
        if state["status"] != "running":
            break
    assert state["status"] == "rolled_back", state
    assert "regression after promotion" in state["reason"]
    assert serving(stack) == baseline
    driver.memory_intact()


def test_invalid_candidates_get_422_with_the_reason_and_a_second_experiment_409(
        stack: Stack) -> None:
    assert stack.http is not None
    broken = stack.http.post("/v1/evolution/experiments",
                             json={"kind": "shadow", "candidate": {"source": "def f(:\n"}})
    assert broken.status_code == 422, broken.text
    assert "does not compile" in broken.json()["error"]["message"]
    raising = BASE.replace('agent = Agent("evolving")', 'raise ImportError("no such model")')
    unimportable = stack.http.post("/v1/evolution/experiments",
                                   json={"kind": "shadow", "candidate": {"source": raising}})
    assert unimportable.status_code == 422, unimportable.text
    assert "failed to import in its zygote" in unimportable.json()["error"]["message"]
    assert "no such model" in unimportable.json()["error"]["message"]
    created = start(stack, FASTER, kind="canary", min_samples=1000, max_samples=1000)
    second = stack.http.post("/v1/evolution/experiments",
                             json={"kind": "shadow", "candidate": {"source": SLOWER}})
    assert second.status_code == 409, second.text
    listed = stack.http.get("/v1/evolution/experiments").json()["experiments"]
    assert listed[0]["id"] == created["id"] and listed[0]["status"] == "running"
    assert [e["status"] for e in listed[1:]] == ["rejected", "rejected"]
    assert all(e["reason"] for e in listed[1:])


def test_ctx_evolve_starts_an_experiment(stack: Stack) -> None:
    response = stack.do("evolve", source=CRASHING)
    assert response.status_code == 200, response.text
    answer = response.json()["output"]
    assert answer["status"] == "running", answer
    driver = Driver(stack)
    final = driver.until_done(answer["experiment_id"])
    assert final["status"] == "rejected"
    assert final["reason"].startswith("died in the shadow")
    assert final["hypothesis"] == "no sleep is faster"


@pytest.mark.slow
def test_kill_9_mid_canary_aborts_safely(tmp_path: Path) -> None:
    agent = tmp_path / "evolving_agent.py"
    agent.write_text(BASE)
    stack = Stack(tmp_path / "vault", ["--agent", str(agent), *FAST_HEARTBEAT], heart=True)
    try:
        baseline = serving(stack)
        created = start(stack, FASTER, kind="canary", min_samples=1000, max_samples=1000)
        driver = Driver(stack)
        for _ in range(40):
            assert driver.one().status_code == 200
        assert experiment(stack, created["id"])["stage"] == "canary-10"
        old = stack.supervisor_pid()
        os.kill(old, signal.SIGKILL)
        time.sleep(0.2)
        stack.wait_ready(not_pid=old)
        final = experiment(stack, created["id"])
        assert final["status"] == "aborted"
        assert final["reason"] == "supervisor restarted mid-experiment"
        assert serving(stack) == baseline
        assert stack.ask({"n": 1}).json()["version"] == baseline
        driver.memory_intact(quarantined=created["candidate_version"])
    finally:
        stack.stop()


@pytest.mark.slow
def test_a_restarted_supervisor_keeps_serving_the_promoted_version(tmp_path: Path) -> None:
    agent = tmp_path / "evolving_agent.py"
    agent.write_text(BASE)
    args = ["--agent", str(agent), *FAST_HEARTBEAT]
    first = Stack(tmp_path / "vault", args)
    try:
        created = start(first, FASTER, kind="shadow", share=1.0, **FAST_STATS)
        driver = Driver(first)
        assert driver.until_done(created["id"])["status"] == "promoted"
    finally:
        first.stop()
    again = Stack(tmp_path / "vault", args)  # the same --agent as before
    try:
        assert serving(again) == created["candidate_version"]
        assert again.ask({"n": 1}).status_code == 200
        driver.stack = again
        driver.memory_intact()
    finally:
        again.stop()


CHECKED = BASE + '''

@agent.check
def echoes_n(client):
    assert client.call({"n": 7}) == {"n": 7}
'''


def test_a_candidate_failing_the_agents_quick_checks_is_rejected_before_it_runs(
        tmp_path: Path) -> None:
    agent = tmp_path / "checked_agent.py"
    agent.write_text(CHECKED)
    stack = Stack(tmp_path / "vault", ["--agent", str(agent), *FAST_HEARTBEAT])
    try:
        assert stack.http is not None
        wrong = CHECKED.replace(PLAIN, '    return {"n": -1}')
        refused = stack.http.post("/v1/evolution/experiments",
                                  json={"kind": "shadow", "candidate": {"source": wrong}})
        assert refused.status_code == 422, refused.text
        assert "failed its quick checks" in refused.json()["error"]["message"]
        assert "echoes_n" in refused.json()["error"]["message"]
        fine = start(stack, CHECKED.replace("DELAY = 0.01", "DELAY = 0.0"), kind="shadow",
                     **FAST_STATS)
        assert fine["status"] == "running"
    finally:
        stack.stop()
