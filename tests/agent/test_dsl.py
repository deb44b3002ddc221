"""The Agent DSL: handler, evolvable registry, feedback hooks, the test client."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from project_o.agent import Agent
from project_o.agent.dsl import check_feedback
from project_o.errors import InvalidArgument


def _echo_agent() -> Agent:
    agent = Agent("echo")

    @agent.handler
    def handle(ctx: Any, request: Any) -> Any:
        ctx.memory.set("last", request)
        return {"echo": request, "id": ctx.request_id}

    return agent


def test_handler_and_test_client_still_work() -> None:
    client = _echo_agent().test_client()
    assert client.call(("a", 1)) == {"echo": ["a", 1], "id": "test-1"}
    assert client.memory.get("last") == ["a", 1]
    assert client.journal == [("memory_set", {"key": "last", "value": ["a", 1]})]


def test_context_carries_tools_params_and_workflows() -> None:
    ctx = _echo_agent().test_client().context("r1")
    assert ctx.request_id == "r1"
    assert len(ctx.tools) == 0 and len(ctx.params) == 0
    assert ctx.workflows.runs() == []


def test_evolvable_records_where_the_code_is_and_changes_nothing() -> None:
    agent = Agent("evolving")

    @agent.evolvable
    def score(text: str) -> int:
        return len(text)

    assert score("abc") == 3
    entry = agent.evolvables[score.__qualname__]
    assert entry.name == "score" and entry.module == __name__
    assert entry.file == inspect.getsourcefile(score)
    assert entry.line == score.__code__.co_firstlineno
    assert entry.to_dict()["qualname"].endswith("score")
    with pytest.raises(InvalidArgument, match="needs a function"):
        agent.evolvable(len)  # type: ignore[arg-type]


def test_feedback_reaches_every_hook_and_errors_are_isolated() -> None:
    agent = _echo_agent()
    seen: list[dict[str, Any]] = []

    @agent.on_feedback
    def broken(ctx: Any, feedback: dict[str, Any]) -> None:
        raise RuntimeError("hook bug")

    @agent.on_feedback
    def record(ctx: Any, feedback: dict[str, Any]) -> None:
        seen.append(feedback)
        ctx.memory.set(f"score:{feedback['request_id']}", feedback["score"])

    client = agent.test_client()
    client.call("hi")
    reports = client.feedback("test-1", 0.5, comment="good")
    assert seen == [{"request_id": "test-1", "score": 0.5, "comment": "good", "version": "test"}]
    assert client.memory.get("score:test-1") == 0.5  # hooks write durable memory
    assert [r["ok"] for r in reports] == [False, True]
    assert reports[0]["error"]["type"] == "RuntimeError"
    assert "hook bug" in reports[0]["error"]["message"]
    assert "raise RuntimeError" in reports[0]["error"]["traceback"]


@pytest.mark.parametrize(
    ("feedback", "needle"),
    [
        ({"score": 1}, "request_id"),
        ({"request_id": "r", "score": 1.5}, "from -1 to 1"),
        ({"request_id": "r", "score": True}, "from -1 to 1"),
        ({"request_id": "r", "score": float("nan")}, "from -1 to 1"),
        ({"request_id": "r", "score": "1"}, "from -1 to 1"),
        ({"request_id": "r", "score": 0, "comment": 3}, "comment"),
        ("nope", "must be a map"),
    ],
)
def test_malformed_feedback_is_refused(feedback: Any, needle: str) -> None:
    with pytest.raises(InvalidArgument, match=needle):
        check_feedback(feedback)


def test_feedback_without_hooks_is_fine() -> None:
    assert _echo_agent().test_client().feedback("x", -1) == []


def test_one_handler_only_and_a_name_required() -> None:
    agent = _echo_agent()
    with pytest.raises(InvalidArgument, match="already has a handler"):
        agent.handler(lambda ctx, request: None)
    with pytest.raises(InvalidArgument, match="non-empty name"):
        Agent(" ")


def test_duplicate_workflow_is_refused() -> None:
    agent = Agent("flows")
    agent.workflow("a")
    with pytest.raises(InvalidArgument, match="already has a workflow"):
        agent.workflow("a")
    assert list(agent.workflows) == ["a"]


@pytest.mark.parametrize(
    "module",
    ["dsl", "tools", "toolbox", "params", "workflow", "docstrings"],
)
def test_public_names_exist(module: str) -> None:
    imported = __import__(f"project_o.agent.{module}", fromlist=["__all__"])
    missing = [name for name in imported.__all__ if not hasattr(imported, name)]
    assert imported.__all__ and missing == []
