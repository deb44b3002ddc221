"""Plays the supervisor's part against a real zygote and real instances.

::

    test ── zygote(...) ──► ZygoteHandle (a real zygote process)
         ── spawn(...)  ──► Peer: the supervisor's end of one forked instance
                             .call(input)    request; acks each wal_entry with the next
                                             sequence (recorded in .acked); returns the
                                             response or error frame
                             .expect(type)   next frame of that type (heartbeats are
                                             recorded in .beats, never skipped silently)
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import time
from collections.abc import AsyncIterator, Coroutine, Mapping
from pathlib import Path
from typing import Any, TypeVar

import psutil

from project_o.errors import ConnectionClosed, ProtocolError
from project_o.runtime.confine import SandboxPolicy
from project_o.runtime.confine.pids import inner_pid
from project_o.runtime.sandbox import scrubbed_env
from project_o.runtime.zygote_client import ExitStatus, ForkedInstance, ZygoteHandle
from project_o.vault.sealed import sealed_copy
from project_o.wire import Message, MessageType, read_message_async, write_message_async
from project_o.wire.fd_passing import write_message_with_fd_async

CHAOS_AGENT = Path(__file__).resolve().parents[1] / "fixtures" / "chaos_agent.py"
#: generous: a loaded CI box may be slow, and nothing here waits this long when it works
STEP_TIMEOUT = 15.0
#: fast beats keep heartbeat tests short
FAST_BEATS = {"heartbeat_interval": 0.05}

_T = TypeVar("_T")
_request_ids = itertools.count(1)


def run(coro: Coroutine[Any, Any, _T], timeout: float = 120.0) -> _T:
    """Run one async test scenario with an overall limit."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


def forking_zygote(handle: ZygoteHandle) -> int:
    """The host pid of the process that forks (the zygote's pid, or in a PID
    namespace its first process, the zygote's only child)."""
    children = psutil.Process(handle.pid).children()
    return children[0].pid if len(children) == 1 and inner_pid(children[0].pid) == 1 else handle.pid


@contextlib.asynccontextmanager
async def zygote(
    agent: Path | str = CHAOS_AGENT, *, env: Mapping[str, str] | None = None, version: str = "v1",
    readable: tuple[Path, ...] = (),
) -> AsyncIterator[ZygoteHandle]:
    """A real zygote for the duration of the block; ``readable``: directories its
    instances read (checkpoints), shown read-only in its sandbox."""
    handle = await ZygoteHandle.start(
        agent, version, env=scrubbed_env() if env is None else env,
        sandbox=SandboxPolicy(readonly=tuple(str(p) for p in readable)))
    try:
        yield handle
    finally:
        await handle.close()


class Peer:
    """The supervisor's end of one instance's socket."""

    def __init__(self, forked: ForkedInstance, first_sequence: int = 0) -> None:
        self.forked = forked
        self.pid = forked.pid
        self.beats: list[tuple[float, Message]] = []
        self.acked: list[dict[str, Any]] = []
        self.sequence = first_sequence
        self.hello: Message | None = None

    async def send(self, message_type: str, **data: Any) -> None:
        await write_message_async(self.forked.writer, Message(message_type, data))

    async def read(self, timeout: float = STEP_TIMEOUT) -> Message:
        """The next frame, heartbeats included (and recorded)."""
        message = await asyncio.wait_for(read_message_async(self.forked.reader), timeout)
        if message.type == MessageType.HEARTBEAT:
            self.beats.append((time.monotonic(), message))
        return message

    async def expect(self, message_type: str, timeout: float = STEP_TIMEOUT) -> Message:
        """The next frame that is not a heartbeat; it must be ``message_type``."""
        while True:
            message = await self.read(timeout)
            if message.type == MessageType.HEARTBEAT and message_type != MessageType.HEARTBEAT:
                continue
            assert message.type == message_type, f"expected {message_type}, got {message}"
            return message

    async def restore(
        self,
        checkpoint: str | Path | None = None,
        entries: list[dict[str, Any]] | None = None,
        last_sequence: int = 0,
    ) -> Message:
        """Send restore; return the first heartbeat (the instance's "restored").

        A checkpoint goes as the supervisor sends it: a sealed copy of the
        file, its descriptor riding with the frame.
        """
        data = {"entries": entries or [], "last_sequence": last_sequence}
        if checkpoint is None:
            await self.send("restore", checkpoint=None, **data)
        else:
            await self.send_checkpoint(Path(checkpoint), **data)
        return await self.expect("heartbeat")

    async def send_checkpoint(self, path: Path, **data: Any) -> None:
        """Send a ``restore`` frame carrying a sealed copy of the file at ``path``."""
        fd = sealed_copy(path)
        try:
            message = Message("restore", {"checkpoint": {"id": path.stem}, **data})
            await write_message_with_fd_async(self.forked.writer, message, fd)
        finally:
            os.close(fd)

    async def call(self, request: Any, *, request_id: str | None = None) -> Message:
        """Send a request, ack its memory writes, return its response or error frame."""
        request_id = request_id or f"r{next(_request_ids)}"
        await self.send("request", id=request_id, input=request, deadline_ms=10_000)
        while True:
            message = await self.read()
            if message.type == MessageType.WAL_ENTRY:
                await self.ack(message)
            elif message.type in (MessageType.RESPONSE, MessageType.ERROR):
                assert message.data["id"] == request_id, message
                return message
            else:
                assert message.type == MessageType.HEARTBEAT, message

    async def ack(self, entry: Message) -> int:
        """Acknowledge one wal_entry with the next sequence, as the vault would."""
        self.sequence += 1
        self.acked.append(
            {
                "sequence": self.sequence,
                "operation": entry.data["operation"],
                "data": entry.data["data"],
            }
        )
        await self.send("wal_ack", id=entry.data["id"], sequence=self.sequence)
        return self.sequence

    async def closed(self, timeout: float = STEP_TIMEOUT) -> ProtocolError:
        """Read until the stream ends or breaks; return the error that ended it."""
        try:
            while True:
                await self.read(timeout)
        except ProtocolError as exc:
            return exc

    async def exited(self, timeout: float = STEP_TIMEOUT) -> ExitStatus:
        """How the instance ended, as its zygote reports it."""
        return await asyncio.wait_for(asyncio.shield(self.forked.exited), timeout)

    def kill(self) -> None:
        """SIGKILL the instance's process group, as the supervisor does."""
        for kill in (os.killpg, os.kill):
            with contextlib.suppress(ProcessLookupError):
                kill(self.pid, signal.SIGKILL)

    async def silence(self, seconds: float) -> list[Message]:
        """Everything that arrives within ``seconds`` (until EOF)."""
        received: list[Message] = []
        deadline = time.monotonic() + seconds
        with contextlib.suppress(TimeoutError, ConnectionClosed):
            while (left := deadline - time.monotonic()) > 0:
                received.append(await self.read(left))
        return received


async def spawn(
    handle: ZygoteHandle,
    role: str = "main",
    *,
    limits: Mapping[str, Any] | None = None,
    config: Mapping[str, Any] | None = None,
    restore: bool = True,
    checkpoint: str | Path | None = None,
    entries: list[dict[str, Any]] | None = None,
    last_sequence: int = 0,
) -> Peer:
    """Fork an instance, read its hello and (by default) restore it."""
    forked = await handle.fork(role, f"{role}-{next(_request_ids)}", limits, config)
    peer = Peer(forked, first_sequence=last_sequence)
    peer.hello = await peer.expect("hello")
    if restore:
        await peer.restore(checkpoint, entries, last_sequence)
    return peer
