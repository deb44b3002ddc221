"""Milestones of the evolution cycle, against a real supervisor.

M4: the agent learns from user feedback — a candidate users rate better is
promoted, one they rate worse never reaches full traffic.
M5: the agent discovers a bug in production and a mutation that fixes it
is promoted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.supervisor.harness import FAST_HEARTBEAT, Stack
from tests.supervisor.test_evolution_e2e import BASE, FINISHED, experiment, serving, start

pytestmark = pytest.mark.slow

#: a candidate that answers the same way, only its version differs
RESTYLED = BASE.replace('agent = Agent("evolving")', 'agent = Agent("evolving")  # restyled')
FEEDBACK_STATS = {"kind": "canary", "metric": "feedback", "min_samples": 20,
                  "max_samples": 300, "stages": [0.5, 1.0], "validation_requests": 20}


def _rate_until_done(stack: Stack, experiment_id: str, rating: dict[str, float]) -> dict[str, Any]:
    """Users ask and rate every answer by the version that gave it."""
    assert stack.http is not None
    for n in range(3000):
        answer = stack.ask({"n": n}).json()
        score = rating.get(answer["version"], 0.0)
        posted = stack.http.post("/v1/feedback", json={"request_id": answer["request_id"],
                                                       "score": score})
        assert posted.status_code == 202, posted.text
        if n % 10 == 0:
            state = experiment(stack, experiment_id)
            if state["status"] in FINISHED:
                return state
    return experiment(stack, experiment_id)


def _stack(tmp_path: Path, source: str) -> Stack:
    agent = tmp_path / "agent.py"
    agent.write_text(source)
    return Stack(tmp_path / "vault", ["--agent", str(agent), *FAST_HEARTBEAT])


def test_m4_a_candidate_users_rate_better_is_promoted(tmp_path: Path) -> None:
    stack = _stack(tmp_path, BASE)
    try:
        baseline = serving(stack)
        created = start(stack, RESTYLED, **FEEDBACK_STATS)
        rating = {baseline: -0.5, created["candidate_version"]: 0.8}
        final = _rate_until_done(stack, created["id"], rating)
        assert final["status"] == "promoted", final
        assert "feedback" in final["reason"]
        assert serving(stack) == created["candidate_version"]
    finally:
        stack.stop()


def test_m4_a_candidate_users_rate_worse_never_reaches_full_traffic(tmp_path: Path) -> None:
    stack = _stack(tmp_path, BASE)
    try:
        baseline = serving(stack)
        created = start(stack, RESTYLED, **FEEDBACK_STATS)
        rating = {baseline: 0.8, created["candidate_version"]: -0.8}
        final = _rate_until_done(stack, created["id"], rating)
        assert final["status"] in ("rejected", "rolled_back"), final
        assert "feedback" in final["reason"]
        assert serving(stack) == baseline
    finally:
        stack.stop()


BUGGY = '''
from project_o import Agent

agent = Agent("divider")
divisor = agent.param("divisor", 0.0, low=0.0, high=4.0)

@agent.handler
def handle(ctx, request):
    try:
        return {"share": 12 / ctx.params.divisor}
    except ZeroDivisionError:
        # The agent notices its own bug in production and proposes a fix.
        if not ctx.memory.get("fix_proposed"):
            ctx.memory.set("fix_proposed", True)
            ctx.evolve("divisor 0 crashes every request; 2 is the intended share",
                       params={"divisor": 2.0})
        raise
'''


def test_m5_a_bug_found_in_production_is_fixed_by_a_promoted_mutation(tmp_path: Path) -> None:
    stack = _stack(tmp_path, BUGGY)
    try:
        buggy = serving(stack)
        assert stack.ask({}).status_code == 502  # the bug: a handler error, and the proposal
        assert stack.http is not None
        listed = stack.http.get("/v1/evolution/experiments").json()["experiments"]
        assert listed and listed[0]["hypothesis" if "hypothesis" in listed[0] else "id"]
        fix_id = listed[0]["id"]
        # The agent's own proposal uses the defaults: a 10 % shadow, then canary
        # stages of 10 / 50 / 100 % with 50 samples per arm, then 50 validation
        # requests — well over a thousand requests in all.
        for n in range(5000):
            stack.ask({})
            if n % 10 == 0:
                state = experiment(stack, fix_id)
                if state["status"] in FINISHED:
                    break
        assert state["status"] == "promoted", (state["stage"], state["samples"],
                                               state["timeline"][-3:])
        assert "errors" in state["reason"]
        assert serving(stack) != buggy
        assert stack.ask({}).json()["output"] == {"share": 6.0}
    finally:
        stack.stop()
