"""The LLM proxy between a real InstanceHandle and the instance's LLMLink, over a socketpair.

The supervisor's side is the real :class:`InstanceHandle` and
:class:`LLMProxy` calling the local OpenAI-compatible server; the
instance's side is the real :class:`LLMLink` driven the way an ``async``
handler uses it (an event-loop reader dispatching the answers), so several
calls are in flight on one socket at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from project_o.errors import LLMError
from project_o.llm.client import LLMClient
from project_o.llm.config import LLMConfig
from project_o.llm.remote import RemoteClient
from project_o.runtime.llm_link import LLMLink
from project_o.supervisor.instance_handle import InstanceHandle
from project_o.supervisor.llm_proxy import LLMProxy
from project_o.wire import (
    Message,
    MessageType,
    encode_frame,
    read_message_async,
    write_message_async,
)
from tests.agent.openai_server import Delay, OpenAIServer, Reply

KEY = "sk-unit-proxy-77e1"


@dataclass
class Owner:
    """The instance's owner as the handle sees it: llm calls go to the proxy."""

    proxy: LLMProxy | None = None
    deaths: list[str] = field(default_factory=list)

    async def on_wal_entry(self, instance: InstanceHandle, message: Message) -> None:
        raise AssertionError("no memory writes here")

    async def on_checkpoint(self, instance: InstanceHandle, message: Message) -> None:
        raise AssertionError("no checkpoints here")

    def on_llm_call(self, instance: InstanceHandle, message: Message) -> None:
        assert self.proxy is not None
        self.proxy.serve(instance, message)

    def on_death(self, instance: InstanceHandle, reason: str) -> None:
        self.deaths.append(reason)


@dataclass
class Wired:
    proxy: LLMProxy
    owner: Owner
    handle: InstanceHandle
    client: RemoteClient
    writer: asyncio.StreamWriter  # the instance's end


@contextlib.asynccontextmanager
async def wired(config: LLMConfig | None, **limits: Any) -> AsyncIterator[Wired]:
    """A handle and a link on the two ends of a socketpair, with a proxy between."""
    ours, theirs = socket.socketpair()
    # The handle kills its instance's process group: give it a harmless one.
    stand_in = await asyncio.create_subprocess_exec("sleep", "60", start_new_session=True)
    async with asyncio.TaskGroup() as group:
        reader, writer = await asyncio.open_unix_connection(sock=ours)
        i_reader, i_writer = await asyncio.open_unix_connection(sock=theirs)
        owner = Owner()
        handle = InstanceHandle(pid=stand_in.pid, role="main", version="v1", instance_id="main-1",
                                reader=reader, writer=writer, owner=owner,
                                max_frame_size=1 << 20)
        owner.proxy = LLMProxy(config, lambda coro, name: group.create_task(coro, name=name),
                               **limits)
        handle.start_reading()

        def send(kind: MessageType, data: dict[str, Any]) -> None:
            # On the loop, as the instance's locked writer is: buffered, never awaited.
            i_writer.write(encode_frame(Message(kind, data)))

        link = LLMLink(send)

        async def read() -> None:
            with contextlib.suppress(Exception):
                while True:
                    link.dispatch(await read_message_async(i_reader))

        reading = group.create_task(read())
        try:
            yield Wired(owner.proxy, owner, handle, RemoteClient(link), i_writer)
        finally:
            reading.cancel()
            owner.proxy.close()
            handle.kill("test over")
            await handle.close()
            i_writer.close()
            await stand_in.wait()


def _config(server: OpenAIServer, **extra: Any) -> LLMConfig:
    return LLMConfig(model="test-model", base_url=server.base_url, api_key=KEY, max_retries=0,
                     **extra)


def _ask(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def test_many_async_calls_are_in_flight_at_once_each_with_its_own_stream() -> None:
    arrived = threading.Semaphore(0)
    everyone_here = threading.Event()
    seen: list[int] = []

    def responder(body: dict[str, Any]) -> Reply:
        arrived.release()
        everyone_here.wait(timeout=20)  # answers only once all four are at the server
        word = body["messages"][-1]["content"]
        return Reply(f"echo {word}", chunks=["echo ", word])

    async def scenario(server: OpenAIServer) -> None:
        async with wired(_config(server)) as w:
            pieces: dict[str, list[str]] = {w: [] for w in ("a", "b", "c", "d")}
            calls = [asyncio.create_task(w.client.complete_async(
                _ask(word), stream=True, on_token=pieces[word].append)) for word in pieces]
            for _ in pieces:
                await asyncio.to_thread(arrived.acquire, timeout=20)
            seen.append(w.proxy.pending)
            everyone_here.set()
            completions = await asyncio.gather(*calls)
            assert [c.text for c in completions] == ["echo a", "echo b", "echo c", "echo d"]
            assert pieces == {w: ["echo ", w] for w in pieces}
            assert w.proxy.pending == 0 and w.owner.deaths == []

    with OpenAIServer() as server:
        server.respond_with(responder)
        asyncio.run(asyncio.wait_for(scenario(server), 60))
    assert seen == [4]  # all four were at the model together: none waited for another


def test_tool_calls_come_back_as_the_model_made_them() -> None:
    async def scenario(server: OpenAIServer) -> None:
        async with wired(_config(server)) as w:
            tools = [{"type": "function", "function": {"name": "add", "parameters": {}}}]
            completion = await w.client.complete_async(_ask("1+2"), tools=tools)
            (call,) = completion.tool_calls
            assert (call.name, call.arguments) == ("add", '{"a": 1, "b": 2}')
            assert completion.usage.total_tokens == 15
            assert server.requests[0]["tools"] == tools

    with OpenAIServer() as server:
        server.script(Reply(tool_calls=[{"name": "add", "arguments": '{"a": 1, "b": 2}'}]))
        asyncio.run(asyncio.wait_for(scenario(server), 60))


def test_a_slow_model_is_an_error_for_the_call_not_for_the_supervisor() -> None:
    async def scenario(server: OpenAIServer) -> None:
        async with wired(_config(server, timeout=30.0), timeout=0.5) as w:
            with pytest.raises(LLMError, match="longer than 0.5 s"):
                await w.client.complete_async(_ask("slow"))
            assert w.handle.alive and w.proxy.pending == 0

    with OpenAIServer() as server:
        server.script(Delay(5.0, Reply("too late")))
        asyncio.run(asyncio.wait_for(scenario(server), 60))


def test_refusals_are_answered_at_once() -> None:
    async def scenario(server: OpenAIServer) -> None:
        async with wired(None) as nothing:
            with pytest.raises(LLMError, match="no LLM is configured"):
                await nothing.client.complete_async(_ask("hi"))
        async with wired(_config(server)) as w:
            with pytest.raises(LLMError, match="extra_headers"):
                await w.client.complete_async(_ask("hi"), options={"extra_headers": {"x": "y"}})
            assert server.requests == [] and w.handle.alive

    with OpenAIServer() as server:
        asyncio.run(asyncio.wait_for(scenario(server), 60))


def test_calls_past_the_instance_limit_are_refused_not_queued() -> None:
    release = threading.Event()

    async def scenario(server: OpenAIServer) -> None:
        async with wired(_config(server), max_per_instance=1) as w:
            first = asyncio.create_task(w.client.complete_async(_ask("first")))
            while not server.requests:
                await asyncio.sleep(0.01)
            with pytest.raises(LLMError, match="1 LLM calls in flight"):
                await w.client.complete_async(_ask("second"))
            release.set()
            assert (await first).text == "ok"

    with OpenAIServer() as server:
        server.respond_with(lambda body: (release.wait(20), Reply("ok"))[1])
        asyncio.run(asyncio.wait_for(scenario(server), 60))


def test_a_malformed_llm_call_kills_the_instance_only() -> None:
    async def scenario(server: OpenAIServer) -> None:
        async with wired(_config(server)) as w:
            died = w.handle.waiter("never")
            await write_message_async(w.writer, Message(MessageType.LLM_CALL, {
                "id": "x", "messages": "not a list"}))
            with pytest.raises(Exception, match="protocol violation"):
                await died
            assert "llm_call needs messages" in w.owner.deaths[0]

    with OpenAIServer() as server:
        asyncio.run(asyncio.wait_for(scenario(server), 60))


class _BrokenClient(LLMClient):
    """A client with a bug: what the proxy must report as its own failure, logged."""

    def complete(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug in the client")


def test_a_bug_in_the_call_is_reported_as_such_and_a_stopped_proxy_as_stopping(
        caplog: pytest.LogCaptureFixture) -> None:
    async def scenario(server: OpenAIServer) -> None:
        config = _config(server)
        async with wired(config, client=_BrokenClient(config)) as w:
            with pytest.raises(LLMError, match="could not make the call: RuntimeError: a bug"):
                await w.client.complete_async(_ask("hi"))
            assert "LLM call" in caplog.text  # logged with its traceback
            w.proxy.close()
            with pytest.raises(LLMError, match="the supervisor is stopping"):
                await w.client.complete_async(_ask("hi"))
            assert w.handle.alive and w.proxy.pending == 0

    with OpenAIServer() as server:
        asyncio.run(asyncio.wait_for(scenario(server), 60))


def test_a_call_that_times_out_while_queued_never_reaches_the_model() -> None:
    release = threading.Event()

    def responder(body: dict[str, Any]) -> Reply:
        word = body["messages"][-1]["content"]
        if word == "stuck":
            release.wait(20)
        return Reply(f"echo {word}")

    async def scenario(server: OpenAIServer) -> None:
        async with wired(_config(server), max_concurrency=1, timeout=3.0) as w:
            stuck = asyncio.create_task(w.client.complete_async(_ask("stuck")))
            while not server.requests:
                await asyncio.sleep(0.01)
            # The only thread is taken: this one waits in the queue until its time is up.
            with pytest.raises(LLMError, match="longer than 3 s"):
                await w.client.complete_async(_ask("queued"))
            with pytest.raises(LLMError, match="longer than 3 s"):
                await stuck
            release.set()
            # One thread, first in first out: had "queued" stayed queued, it would run first.
            assert (await w.client.complete_async(_ask("after"))).text == "echo after"
            assert [r["messages"][-1]["content"] for r in server.requests] == ["stuck", "after"]

    with OpenAIServer() as server:
        server.respond_with(responder)
        asyncio.run(asyncio.wait_for(scenario(server), 60))
