"""What an InstanceHandle counts as still owed by its instance after a caller gave up.

A real handle on one end of a socketpair; the test plays the instance on the
other end, answering late or never.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from project_o.supervisor.instance_handle import InstanceDied, InstanceHandle
from project_o.wire import Message, read_message_async, write_message_async


@dataclass
class Owner:
    deaths: list[str] = field(default_factory=list)

    async def on_wal_entry(self, instance: InstanceHandle, message: Message) -> None:
        raise AssertionError("no writes here")

    async def on_checkpoint(self, instance: InstanceHandle, message: Message) -> None:
        raise AssertionError("no checkpoints here")

    def on_llm_call(self, instance: InstanceHandle, message: Message) -> None:
        raise AssertionError("no model calls here")

    def on_death(self, instance: InstanceHandle, reason: str) -> None:
        self.deaths.append(reason)


@dataclass
class Wired:
    handle: InstanceHandle
    reader: asyncio.StreamReader  # the instance's end
    writer: asyncio.StreamWriter

    async def next_request(self) -> str:
        message = await read_message_async(self.reader)
        assert message.type == "request"
        request_id: str = message.data["id"]
        return request_id

    async def answer(self, request_id: str) -> None:
        await write_message_async(self.writer,
                                  Message("response", {"id": request_id, "output": "late"}))


@contextlib.asynccontextmanager
async def wired() -> AsyncIterator[Wired]:
    ours, theirs = socket.socketpair()
    # The handle kills its instance's process group: give it a harmless one.
    stand_in = await asyncio.create_subprocess_exec("sleep", "60", start_new_session=True)
    reader, writer = await asyncio.open_unix_connection(sock=ours)
    i_reader, i_writer = await asyncio.open_unix_connection(sock=theirs)
    handle = InstanceHandle(pid=stand_in.pid, role="main", version="v1", instance_id="main-1",
                            reader=reader, writer=writer, owner=Owner(), max_frame_size=1 << 20)
    handle.start_reading()
    try:
        yield Wired(handle, i_reader, i_writer)
    finally:
        handle.kill("test over")
        await handle.close()
        i_writer.close()
        await stand_in.wait()


async def _give_up(wire: Wired, request_id: str) -> None:
    """Send a request and give up on it before the instance answers."""
    call = asyncio.create_task(wire.handle.request(request_id, {}, 5.0))
    assert await wire.next_request() == request_id
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call


def test_a_request_given_up_on_stays_owed_until_the_instance_answers() -> None:
    asyncio.run(asyncio.wait_for(_answered_late(), 30))


async def _answered_late() -> None:
    async with wired() as wire:
        await _give_up(wire, "r1")
        assert wire.handle.in_flight == [] and wire.handle.expired == ["r1"]
        await wire.answer("r1")
        for _ in range(100):  # the handle reads the answer on its own task
            if not wire.handle.expired:
                break
            await asyncio.sleep(0.01)
        assert wire.handle.expired == [] and wire.handle.alive


def test_an_instance_that_dies_running_an_expired_request_names_it_the_culprit() -> None:
    asyncio.run(asyncio.wait_for(_dies_running_it(), 30))


async def _dies_running_it() -> None:
    async with wired() as wire:
        await _give_up(wire, "r1")
        waiting = asyncio.create_task(wire.handle.request("r2", {}, 5.0))
        assert await wire.next_request() == "r2"
        wire.handle.kill("it died")
        with pytest.raises(InstanceDied):
            await waiting
        assert wire.handle.culprit == "r1"  # it was still running r1, not only r2
        assert wire.handle.suspects == ["r1", "r2"]
