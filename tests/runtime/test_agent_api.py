"""The agent API a user writes against, used without the runtime (the test client)."""

from __future__ import annotations

from typing import Any

import pytest

import project_o
from project_o import Agent
from project_o.agent import Context, KVReplica, Memory
from project_o.errors import InvalidArgument


def _notebook() -> Agent:
    agent = Agent("notebook")

    @agent.handler
    def handle(ctx: Context, request: dict[str, Any]) -> Any:
        if request["op"] == "write":
            ctx.memory.set(request["key"], request["value"])
            return {"id": ctx.request_id}
        if request["op"] == "forget":
            ctx.memory.delete(request["key"])
            return None
        return {"value": ctx.memory.get(request["key"], "absent"), "keys": ctx.memory.keys()}

    return agent


def test_agent_is_exported_from_the_package() -> None:
    assert "Agent" in project_o.__all__
    assert project_o.Agent is Agent


def test_test_client_runs_the_handler_with_journaled_memory() -> None:
    client = _notebook().test_client()
    assert client.call({"op": "write", "key": "a", "value": (1, 2)}, request_id="r1") == {
        "id": "r1"
    }
    assert client.call({"op": "read", "key": "a"}) == {"value": [1, 2], "keys": ["a"]}
    client.call({"op": "forget", "key": "a"})
    assert client.call({"op": "read", "key": "a"})["value"] == "absent"
    assert client.journal == [
        ("memory_set", {"key": "a", "value": [1, 2]}),
        ("memory_delete", {"key": "a"}),
    ]


def test_memory_get_returns_a_copy() -> None:
    client = _notebook().test_client()
    client.call({"op": "write", "key": "list", "value": [1]})
    client.memory.get("list").append(2)
    assert client.memory.get("list") == [1]


def test_failed_journal_leaves_memory_unchanged() -> None:
    def refuse(operation: str, data: dict[str, Any]) -> None:
        raise OSError("disk on fire")

    memory = Memory(KVReplica(), refuse)
    with pytest.raises(OSError):
        memory.set("k", 1)
    assert "k" not in memory and memory.keys() == []


@pytest.mark.parametrize(("key", "value"), [("", 1), (3, 1), ("k", {1, 2}), ("k", {1: "x"})])
def test_memory_refuses_what_cannot_be_journaled(key: Any, value: Any) -> None:
    client = _notebook().test_client()
    with pytest.raises(InvalidArgument):
        client.memory.set(key, value)
    assert client.journal == []


def test_replica_applies_wal_operations_and_refuses_others() -> None:
    replica = KVReplica()
    replica.apply("memory_set", {"key": "a", "value": {"x": 1}})
    replica.apply("memory_delete", {"key": "missing"})  # idempotent
    assert replica.snapshot() == {"a": {"x": 1}}
    with pytest.raises(InvalidArgument, match="not a memory operation"):
        replica.apply("tool_register", {"key": "a"})
    with pytest.raises(InvalidArgument, match="no 'value'"):
        replica.apply("memory_set", {"key": "a"})


def test_an_agent_has_one_handler_and_a_name() -> None:
    agent = Agent("solo")
    with pytest.raises(InvalidArgument, match="no handler"):
        agent.test_client().call("x")
    agent.handler(lambda ctx, request: request)
    with pytest.raises(InvalidArgument, match="already has a handler"):
        agent.handler(lambda ctx, request: None)
    with pytest.raises(InvalidArgument):
        Agent("  ")


def test_test_client_refuses_output_a_supervisor_could_not_receive() -> None:
    agent = Agent("sets")
    agent.handler(lambda ctx, request: {1, 2})
    with pytest.raises(InvalidArgument):
        agent.test_client().call("x")
