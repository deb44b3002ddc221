"""Perception: the health monitor sees a slow version and raises an evolution intent."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.supervisor.harness import FAST_HEARTBEAT, Stack

pytestmark = pytest.mark.slow

SLOW = '''
import time
from project_o import Agent

agent = Agent("slow")
delay = agent.param("delay_ms", 20.0, low=0.0, high=50.0)

@agent.evolvable
def work(ms):
    time.sleep(ms / 1000)
    return ms

@agent.handler
def handle(ctx, request):
    return {"slept": work(ctx.params.delay_ms)}
'''


def _slow_stack(tmp_path: Path, autonomy: str) -> Stack:
    agent = tmp_path / "slow_agent.py"
    agent.write_text(SLOW)
    return Stack(tmp_path / "vault", ["--agent", str(agent), *FAST_HEARTBEAT,
                                      "--latency-threshold-ms", "5", "--autonomy", autonomy])


def test_a_slow_version_raises_an_intent_that_is_proposed(tmp_path: Path) -> None:
    stack = _slow_stack(tmp_path, "propose")
    try:
        for n in range(60):  # past the monitor's minimum of 50 samples
            assert stack.ask(n).status_code == 200
        events = stack.status()["events"]
        intents = [e for e in events if e["kind"] == "intent"]
        assert intents and "latency" in intents[0]["reason"]
        assert stack.http is not None
        deadline = time.monotonic() + 10  # the proposal is written in the background
        listed: list[dict[str, str]] = []
        while not listed and time.monotonic() < deadline:
            listed = stack.http.get("/v1/evolution/experiments").json()["experiments"]
            time.sleep(0.05)
        assert [e["status"] for e in listed] == ["proposed"]
        approved = stack.http.post(f"/v1/evolution/experiments/{listed[0]['id']}/approve")
        assert approved.status_code in (200, 201), approved.text
    finally:
        stack.stop()


def test_autonomy_off_only_records_nothing(tmp_path: Path) -> None:
    stack = _slow_stack(tmp_path, "off")
    try:
        for n in range(60):
            assert stack.ask(n).status_code == 200
        assert not [e for e in stack.status()["events"] if e["kind"] == "intent"]
        assert stack.http is not None
        assert stack.http.get("/v1/evolution/experiments").json()["experiments"] == []
    finally:
        stack.stop()
