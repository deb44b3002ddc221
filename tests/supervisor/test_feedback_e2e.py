"""POST /v1/feedback against a real supervisor: stored with its version, run by the hooks.

The agent's ``on_feedback`` hook writes the feedback into memory (a
journaled write, done while the instance handles the feedback frame); the
tests read it back with a request, from the catalog, and after a kill -9.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from project_o.vault.catalog import Catalog, FeedbackRecord
from tests.supervisor.harness import FAST_HEARTBEAT, Stack

AGENT = """
from project_o import Agent

agent = Agent("rated")


@agent.handler
def handle(ctx, request):
    if request.get("do") == "get":
        return ctx.memory.get(request["key"])
    if request.get("do") == "keys":
        return sorted(ctx.memory.keys())
    if request.get("do") == "raise":
        raise ValueError("asked to fail")
    return {"echo": request}


@agent.on_feedback
def remember_feedback(ctx, feedback):
    ctx.memory.set("feedback:" + feedback["request_id"], feedback)


@agent.on_feedback
def fussy(ctx, feedback):
    if feedback["comment"] == "boom":
        raise RuntimeError("the fussy hook refuses 'boom'")
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("feedback")
    agent = root / "rated_agent.py"
    agent.write_text(AGENT)
    running = Stack(root / "vault", ["--agent", str(agent), *FAST_HEARTBEAT])
    yield running
    running.stop()


def answered(stack: Stack) -> dict[str, Any]:
    """The reply to a plain request (its request_id is what feedback rates)."""
    response = stack.ask({"say": "hi"})
    assert response.status_code == 200, response.text
    reply: dict[str, Any] = response.json()
    return reply


def memory(stack: Stack, key: str) -> Any:
    response = stack.do("get", key=key)
    assert response.status_code == 200, response.text
    return response.json()["output"]


def stored_feedback(stack: Stack) -> list[FeedbackRecord]:
    """Every feedback row in the vault's catalog (read from this process)."""
    with Catalog.open(Path(stack.vault) / "catalog.sqlite") as catalog:
        versions = [v.id for v in catalog.list_versions()]
        return sorted((r for v in versions for r in catalog.feedback_for(v)), key=lambda r: r.id)


def send_feedback(stack: Stack, body: Any) -> Any:
    assert stack.http is not None
    return stack.http.post("/v1/feedback", json=body)


def test_feedback_is_stored_with_its_version_and_reaches_the_hook(stack: Stack) -> None:
    reply = answered(stack)
    rid, version = reply["request_id"], reply["version"]

    response = send_feedback(stack, {"request_id": rid, "score": 0.75, "comment": "spot on"})

    assert response.status_code == 202, response.text
    assert response.json() == {
        "stored": True,
        "delivered": True,
        "version": version,
        "reason": None,
    }
    (record,) = [r for r in stored_feedback(stack) if r.request_id == rid]
    assert (record.version_id, record.score, record.comment) == (version, 0.75, "spot on")
    assert memory(stack, f"feedback:{rid}") == {
        "request_id": rid,
        "score": 0.75,
        "comment": "spot on",
        "version": version,
    }


def test_feedback_on_a_failed_request_is_taken_too(stack: Stack) -> None:
    failed = stack.do("raise")
    assert failed.status_code == 502
    rid = failed.json()["error"]["request_id"]
    response = send_feedback(stack, {"request_id": rid, "score": -1})
    assert response.status_code == 202, response.text
    assert memory(stack, f"feedback:{rid}")["score"] == -1


def test_a_failing_hook_is_reported_and_the_other_hooks_still_run(stack: Stack) -> None:
    rid = answered(stack)["request_id"]

    response = send_feedback(stack, {"request_id": rid, "score": 0, "comment": "boom"})

    assert response.status_code == 202, response.text
    body = response.json()
    assert (body["stored"], body["delivered"]) == (True, False)
    assert "fussy" in body["reason"] and "RuntimeError" in body["reason"]
    assert memory(stack, f"feedback:{rid}")["comment"] == "boom"
    assert any(r.request_id == rid for r in stored_feedback(stack))
    events = stack.status()["events"]
    assert any(e["kind"] == "feedback_hook_failed" and e["subject"] == rid for e in events)


@pytest.mark.parametrize(
    "body",
    [
        {"request_id": "never-issued", "score": 1},
        {"request_id": "REQUEST", "score": 2},
        {"request_id": "REQUEST", "score": "1"},
        {"request_id": "REQUEST"},
        {"request_id": "REQUEST", "score": 1, "stars": 5},
        {"score": 1},
    ],
    ids=["unknown-id", "out-of-range", "string-score", "no-score", "unknown-field", "no-id"],
)
def test_bad_feedback_is_refused_and_changes_nothing(stack: Stack, body: dict[str, Any]) -> None:
    rid = answered(stack)["request_id"]
    if body.get("request_id") == "REQUEST":
        body = {**body, "request_id": rid}
    rows_before = len(stored_feedback(stack))
    keys_before = stack.do("keys").json()["output"]

    response = send_feedback(stack, body)

    expected = 404 if body.get("request_id") == "never-issued" else 422
    assert response.status_code == expected, response.text
    error = response.json()["error"]
    assert error["type"] == ("UnknownRequest" if expected == 404 else "InvalidRequest")
    assert error["message"]
    assert len(stored_feedback(stack)) == rows_before
    assert stack.do("keys").json()["output"] == keys_before


@pytest.mark.slow
def test_what_the_hook_wrote_survives_kill_9_of_the_main(stack: Stack) -> None:
    rid = answered(stack)["request_id"]
    assert send_feedback(stack, {"request_id": rid, "score": 0.5}).json()["delivered"] is True
    victim = stack.main_pid()

    os.kill(victim, signal.SIGKILL)

    assert memory(stack, f"feedback:{rid}")["score"] == 0.5  # served by the replacement
    assert stack.main_pid() != victim
