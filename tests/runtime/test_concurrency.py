"""Many requests in flight in one instance: async handlers, the thread pool, WAL order.

Concurrency is proven without timing: a "gather" request answers
``{"gathered": true}`` only if ``n`` requests of its group are inside the
handler at the same moment, which a one-at-a-time instance never reaches.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from project_o.agent.dsl import DEFAULT_ASYNC_CONCURRENCY, DEFAULT_SYNC_CONCURRENCY
from project_o.wire import Message, MessageType
from project_o.wire.chat import wrap_chat
from tests.runtime.harness import CHAOS_AGENT, FAST_BEATS, Peer, run, spawn, zygote

ASYNC_AGENT = Path(__file__).resolve().parents[1] / "fixtures" / "async_agent.py"


async def _answers(peer: Peer, ids: set[str], *, ack: bool = True) -> dict[str, Message]:
    """Read until every id in ``ids`` is answered (acking writes as they come)."""
    answers: dict[str, Message] = {}
    while set(answers) != ids:
        message = await peer.read()
        if message.type == MessageType.WAL_ENTRY and ack:
            await peer.ack(message)
        elif message.type in (MessageType.RESPONSE, MessageType.ERROR):
            answers[message.data["id"]] = message
    return answers


def _gathered(answers: dict[str, Message]) -> list[Any]:
    return [m.data.get("output") for m in answers.values()]


@pytest.mark.parametrize(("agent", "handler", "limit", "count"), [
    (ASYNC_AGENT, "async", DEFAULT_ASYNC_CONCURRENCY, 40),  # on the instance's loop
    (CHAOS_AGENT, "sync", DEFAULT_SYNC_CONCURRENCY, 8),  # plain def: a pool of threads
])
def test_many_requests_run_at_once(agent: Path, handler: str, limit: int,
                                   count: int) -> None:
    async def scenario() -> None:
        async with zygote(agent) as z:
            peer = await spawn(z, config=FAST_BEATS)
            assert peer.hello is not None
            assert peer.hello.data["handler"] == handler
            assert peer.hello.data["max_concurrency"] == limit
            ids = {f"g{n}" for n in range(count)}
            for request_id in ids:
                await peer.send("request", id=request_id, deadline_ms=30_000,
                                input={"do": "gather", "group": handler, "n": len(ids)})
            answers = await _answers(peer, ids)
            assert _gathered(answers) == [{"gathered": True}] * len(ids)

    run(scenario())


def test_concurrent_writes_are_applied_in_wal_order_whatever_order_acks_come_in() -> None:
    async def scenario() -> None:
        async with zygote(ASYNC_AGENT) as z:
            peer = await spawn(z, config=FAST_BEATS)
            await peer.send("request", id="first", input={"do": "set", "key": "k", "value": 1})
            first = await peer.expect("wal_entry")
            await peer.send("request", id="second", input={"do": "set", "key": "k", "value": 2})
            second = await peer.expect("wal_entry")
            assert first.data["id"] != second.data["id"]
            # The WAL holds them in the order sent: 1 then 2. The second's ack comes first.
            await peer.send("wal_ack", id=second.data["id"], sequence=2)
            held = [m for m in await peer.silence(0.3) if m.type != MessageType.HEARTBEAT]
            assert held == []  # not released before the first: it would apply out of order
            await peer.send("wal_ack", id=first.data["id"], sequence=1)
            answers = await _answers(peer, {"first", "second"}, ack=False)
            assert {m.type for m in answers.values()} == {MessageType.RESPONSE}
            await peer.send("checkpoint", id="c")
            snapshot = await peer.expect("checkpoint")
            assert snapshot.data["last_sequence"] == 2
            assert snapshot.data["state"]["agent_state"]["kv"] == {"k": 2}

    run(scenario())


def test_threads_writes_are_applied_in_wal_order_too() -> None:
    async def scenario() -> None:
        async with zygote() as z:
            peer = await spawn(z, config=FAST_BEATS)
            entries = []
            for n in range(6):
                await peer.send("request", id=f"w{n}",
                                input={"do": "set", "key": "k", "value": n})
            while len(entries) < 6:
                message = await peer.read()
                if message.type == MessageType.WAL_ENTRY:
                    entries.append(message)
            # Acked last first, numbered in the order they were sent.
            for sequence, entry in reversed(list(enumerate(entries, 1))):
                await peer.send("wal_ack", id=entry.data["id"], sequence=sequence)
            await _answers(peer, {f"w{n}" for n in range(6)}, ack=False)
            await peer.send("checkpoint", id="c")
            snapshot = await peer.expect("checkpoint")
            last = entries[-1].data["data"]["value"]
            assert snapshot.data["last_sequence"] == 6
            assert snapshot.data["state"]["agent_state"]["kv"] == {"k": last}

    run(scenario())


def test_a_lying_ack_is_a_protocol_violation() -> None:
    async def scenario() -> None:
        async with zygote(ASYNC_AGENT) as z:
            peer = await spawn(z, config=FAST_BEATS)
            await peer.send("wal_ack", id=12345, sequence=1)  # no such write in flight
            await peer.closed()
            assert (await peer.exited()).exit_code == 76

    run(scenario())


def test_an_async_handler_past_its_deadline_is_cancelled_and_others_answered() -> None:
    async def scenario() -> None:
        async with zygote(ASYNC_AGENT) as z:
            peer = await spawn(z, config=FAST_BEATS)
            await peer.send("request", id="slow", deadline_ms=200,
                            input={"do": "sleep", "seconds": 60})
            await peer.send("request", id="quick", deadline_ms=30_000,
                            input={"do": "echo", "input": "here"})
            answers = await _answers(peer, {"slow", "quick"})
            assert answers["quick"].data["output"] == "here"
            assert answers["slow"].type == MessageType.ERROR
            assert answers["slow"].data["kind"] == "TimeoutError"
            assert "deadline" in answers["slow"].data["message"]

    run(scenario())


def test_an_async_handler_blocking_the_loop_stops_the_heartbeats() -> None:
    async def scenario() -> None:
        async with zygote(ASYNC_AGENT) as z:
            peer = await spawn(z, config=FAST_BEATS)
            before = [m for m in await peer.silence(0.3) if m.type == MessageType.HEARTBEAT]
            assert len(before) >= 2  # beating while idle
            await peer.send("request", id="block", input={"do": "block", "seconds": 1.5})
            during = [m for m in await peer.silence(1.0) if m.type == MessageType.HEARTBEAT]
            assert len(during) <= 1  # 20 intervals; one beat may have been on its way
            peer.kill()

    run(scenario())


def test_a_sync_write_from_an_async_handler_is_refused_with_the_awaitable_named() -> None:
    async def scenario() -> None:
        async with zygote(ASYNC_AGENT) as z:
            peer = await spawn(z, config=FAST_BEATS)
            answer = await peer.call({"do": "sync_set", "key": "k", "value": 1})
            assert answer.type == MessageType.ERROR
            assert answer.data["kind"] == "InvalidArgument"
            assert "aset" in answer.data["message"]
            assert (await peer.call({"do": "echo", "input": 1})).data["output"] == 1

    run(scenario())


def test_async_remember_blocks_and_history_from_concurrent_requests_get_distinct_ids() -> None:
    async def scenario() -> None:
        async with zygote(ASYNC_AGENT) as z:
            peer = await spawn(z, config=FAST_BEATS)
            ids = {f"m{n}" for n in range(6)}
            for n in range(6):
                await peer.send("request", id=f"m{n}", deadline_ms=30_000,
                                input={"do": "remember", "text": f"fact number {n}"})
            answers = await _answers(peer, ids)
            outputs = [m.data["output"] for m in answers.values()]
            assert all(m.type == MessageType.RESPONSE for m in answers.values()), outputs
            assert len({o["id"] for o in outputs}) == 6  # no two requests share a memory id
            assert len({o["seq"] for o in outputs}) == 6
            assert all(o["recalled"] == [o["id"]] for o in outputs)
            operations = [entry["operation"] for entry in peer.acked]
            assert operations.count("memory_remember") == 6
            await peer.send("checkpoint", id="c")
            state = (await peer.expect("checkpoint")).data["state"]
            notes = state["memory_blocks"]["blocks"]
            assert all(f"fact number {n}" in str(notes) for n in range(6))

    run(scenario())


def test_an_async_chat_handler_runs_on_the_loop_beside_a_plain_handler() -> None:
    chat_agent = Path(__file__).resolve().parents[1] / "fixtures" / "async_chat_agent.py"

    async def scenario() -> None:
        async with zygote(chat_agent) as z:
            peer = await spawn(z, config=FAST_BEATS)
            assert peer.hello is not None and peer.hello.data["handler"] == "sync"
            ids = {f"c{n}" for n in range(6)}
            for request_id in ids:
                body = {"messages": [{"role": "user", "content": request_id}],
                        "metadata": {"n": len(ids)}}
                await peer.send("request", id=request_id, deadline_ms=30_000,
                                input=wrap_chat(body))
            await peer.send("request", id="plain", deadline_ms=30_000, input={"x": 1})
            answers = await _answers(peer, {*ids, "plain"})
            for request_id in ids:
                output = answers[request_id].data["output"]
                assert output["content"] == request_id and output["gathered"] is True
                assert output["thread"] == "MainThread"  # the event loop's
            plain = answers["plain"].data["output"]
            assert plain["kind"] == "plain" and plain["thread"].startswith("agent")

    run(scenario())
