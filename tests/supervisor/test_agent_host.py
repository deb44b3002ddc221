"""The agent host on fake instances: serving through deaths, poison, feedback, stop.

The same AgentHost the supervisor runs, with its zygote replaced by a
factory of fake instances and its clock and sleep injected: no process,
no socket, no real pause.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from project_o.errors import PoisonRequest, RequestFailed
from project_o.supervisor.agent_host import AgentHost
from project_o.supervisor.config import SupervisorConfig
from project_o.supervisor.events import EventLog
from project_o.supervisor.feedback_delivery import deliver_feedback
from project_o.wire import Message
from tests.supervisor.fakes import (
    PENDING,
    FakeBook,
    FakeClock,
    FakeFactory,
    FakeVault,
    Sleeps,
    async_test,
    handler_error,
)


async def _host(answer: Any = None, book: FakeBook | None = None,
                **config: Any) -> tuple[AgentHost, FakeFactory]:
    factories: list[FakeFactory] = []

    def make_factory(cfg: SupervisorConfig, version: str, events: EventLog, owner: Any,
                     restore: Any) -> FakeFactory:
        factories.append(FakeFactory(cfg, version, owner, answer))
        return factories[-1]

    settings = SupervisorConfig(vault=Path("/nonexistent"), agent=Path("/agents/a.py"), **config)
    host = AgentHost(settings, FakeVault(), EventLog(), "v1", book,  # type: ignore[arg-type]
                     clock=FakeClock(), sleep=Sleeps(), make_factory=make_factory)
    await host.start()
    return host, factories[0]


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


@async_test
async def test_a_request_is_answered_by_the_main_and_proves_its_version() -> None:
    book = FakeBook()
    host, _ = await _host(book=book)
    result = await host.dispatcher.submit({"q": 1}, request_id="r1")
    assert result.output == {"echo": {"q": 1}} and result.version == "v1"
    assert host.answers.version_of("r1") == "v1"
    await _settle()
    assert book.good == ["v1"]  # once, however many answers
    await host.dispatcher.submit("again")
    await _settle()
    assert book.good == ["v1"]
    await host.stop()


@async_test
async def test_a_main_killed_mid_request_is_taken_over_and_the_request_re_dispatched() -> None:
    host, factory = await _host(answer=lambda _id, _payload: PENDING)
    main, standby = factory.spawned
    request = asyncio.create_task(host.dispatcher.submit("q", request_id="r1"))
    await _settle()
    assert main.in_flight == ["r1"]
    standby.answer = lambda _id, payload: f"standby says {payload}"
    main.culprit = None
    main.kill("socket closed (instance exited)")
    result = await request
    assert result.output == "standby says q"
    assert host.pool.main is standby and standby.role == "main"
    await _settle()
    assert host.pool.standby is not None and host.pool.standby not in (main, standby)
    kinds = [e["kind"] for e in host.events.recent()]
    assert "takeover" in kinds and "crash" in kinds
    await host.stop()


@async_test
async def test_a_request_that_kills_two_instances_is_quarantined_and_others_served() -> None:
    def answer(request_id: str, payload: Any) -> Any:
        return PENDING if payload == "poison" else payload

    host, _factory = await _host(answer=answer)
    request = asyncio.create_task(host.dispatcher.submit("poison", request_id="p"))
    for _ in range(2):
        await _settle()
        victim = host.pool.main
        assert victim is not None and victim.in_flight == ["p"]
        victim.kill("killed by the request")
    with pytest.raises(PoisonRequest, match="quarantined"):
        await request
    assert host.events.of_kind("quarantine")[0]["subject"] == "p"
    assert (await host.dispatcher.submit("fine")).output == "fine"
    await host.stop()


@async_test
async def test_a_handler_error_is_a_failed_request_whose_version_can_be_rated() -> None:
    host, _ = await _host(answer=lambda _id, _payload: handler_error("KeyError", "k"))
    with pytest.raises(RequestFailed):
        await host.dispatcher.submit("q", request_id="r1")
    assert host.answers.version_of("r1") == "v1"
    await host.stop()


@async_test
async def test_feedback_goes_to_the_main_hooks() -> None:
    host, _factory = await _host(answer=lambda _id, fb: [{"hook": "learn", "ok": True}])
    assert await deliver_feedback(host.pool, {"request_id": "r1", "score": 1.0}, 5.0,
                                  host.events) is None
    await host.stop()


@async_test
async def test_stop_takes_a_final_checkpoint_and_shuts_every_instance_down() -> None:
    host, factory = await _host()
    main, standby = factory.spawned
    await host.stop()
    assert main.types_sent() == ["checkpoint", "shutdown"]
    assert standby.types_sent() == ["shutdown"]
    assert not main.alive and not standby.alive and main.closed and standby.closed
    assert factory.zygote is not None and factory.zygote.closed
    main.kill("late")  # a death after stop replaces nothing
    assert factory.spawned == [main, standby]


@async_test
async def test_an_unexpected_error_in_a_host_task_reaches_its_owner() -> None:
    host, factory = await _host()

    async def broken_record(*args: Any) -> None:
        raise RuntimeError("a bug in recording a death")

    host.replacer.record_death = broken_record  # type: ignore[method-assign]
    factory.spawned[0].kill("crash")
    error = await host.tasks.failed
    assert isinstance(error, BaseExceptionGroup) and error.subgroup(RuntimeError) is not None
    await host.stop()


@async_test
async def test_evolution_intents_reach_the_listener_set_after_start() -> None:
    host, factory = await _host()
    heard: list[dict[str, Any]] = []

    async def listener(intent: dict[str, Any]) -> dict[str, Any]:
        heard.append(intent)
        return {"experiment_id": "e1", "status": "started", "reason": ""}

    host.listen_intents(listener)
    await _settle()
    main = factory.spawned[0]
    main.notify("evolution_intent", Message("evolution_intent", {"id": 7, "why": "slow"}))
    await _settle()
    assert heard == [{"id": 7, "why": "slow"}]
    assert main.sent[-1].type == "evolution_result" and main.sent[-1].data["id"] == 7
    await host.stop()


@async_test
async def test_tell_main_says_whether_it_was_sent() -> None:
    host, factory = await _host()
    assert await host.pool.tell_main(Message("hot_reload", {}))
    assert factory.spawned[0].types_sent() == ["hot_reload"]
    factory.spawned[0].kill("gone")
    assert not await host.pool.tell_main(Message("hot_reload", {}))
    await host.stop()


@async_test
async def test_only_the_main_may_write_to_the_vault() -> None:
    host, factory = await _host()
    _main, standby = factory.spawned
    assert host.on_wal_entry(standby, Message("wal_entry", {"id": 1, "operation": "set"})) is None
    assert not standby.alive
    assert standby.death_reason == "protocol violation: standby may not write to the vault"
    await _settle()
    assert host.pool.standby is not None and host.pool.standby is not standby  # replaced
    await host.stop()


@async_test
async def test_a_checkpoint_from_anyone_but_the_main_is_not_written() -> None:
    host, factory = await _host()
    _main, standby = factory.spawned
    written: list[Any] = []

    async def checkpoint(instance: Any, message: Message) -> None:
        written.append(instance)

    host.journal.checkpoint = checkpoint  # type: ignore[method-assign]
    message = Message("checkpoint", {"state": {}, "last_sequence": 0})
    await host.on_checkpoint(standby, message)
    await host.on_checkpoint(host.pool.main, message)  # type: ignore[arg-type]
    assert written == [host.pool.main]
    await host.stop()


@async_test
async def test_the_tree_node_shows_the_zygote_the_instances_and_the_restart_limit() -> None:
    host, factory = await _host(max_restarts=4, restart_period=8.0)
    main, standby = factory.spawned
    main.kill("crash")
    await _settle()
    node = host.describe_tree()
    assert node["version"] == "v1" and node["instance_restarts"] == 1
    assert (node["max_restarts"], node["max_seconds"]) == (4, 8.0)
    assert [(c["id"], c["status"]) for c in node["children"]] == [
        ("zygote", "running"), ("main", "running"), ("standby", "running")]
    assert node["children"][1]["pid"] == standby.pid  # the standby took over
    await host.stop()


@async_test
async def test_a_new_main_relays_intents_once_promoted() -> None:
    host, factory = await _host()
    heard: list[dict[str, Any]] = []

    async def listener(intent: dict[str, Any]) -> dict[str, Any]:
        heard.append(intent)
        return {"experiment_id": None, "status": "ignored", "reason": ""}

    host.listen_intents(listener)
    main, standby = factory.spawned
    main.kill("crash")
    await _settle()
    assert host.pool.main is standby
    standby.notify("evolution_intent", Message("evolution_intent", {"id": 1}))
    await _settle()
    assert heard == [{"id": 1}] and standby.sent[-1].type == "evolution_result"
    await host.stop()


def test_the_host_keeps_under_fifteen_methods_each_doing_work() -> None:
    defs = [name for name, value in vars(AgentHost).items()
            if callable(value) or isinstance(value, property)]
    assert len(defs) < 15, defs
