"""Fake instances, zygote factory and clock for unit tests of the agent host's parts.

No process, no socket, no sleep: a :class:`FakeInstance` answers requests
from a script, dies when told (calling its owner's ``on_death`` as a real
handle does), and records every frame sent to it.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
from collections.abc import Callable, Coroutine
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from project_o.supervisor.instance_handle import HandlerError, InstanceDied
from project_o.wire import Message, decode_payload
from project_o.wire.framing import PREFIX_SIZE

_pids = itertools.count(10_000)


class FakeClock:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Sleeps:
    """An injected ``sleep`` that returns at once and remembers what was asked."""

    def __init__(self, clock: FakeClock | None = None) -> None:
        self.asked: list[float] = []
        self._clock = clock

    async def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)
        if self._clock is not None:
            self._clock.advance(seconds)
        await asyncio.sleep(0)  # a real scheduling point, no real time


class FakeVault:
    """What a host with fake instances reads of its vault at start: checkpoints not sealed at rest.

    Its fake instances never write nor restore, so nothing else is read.
    """

    def __init__(self) -> None:
        self.checkpoints = SimpleNamespace(keyring=None)


class FakeInstance:
    """What the host sees of an instance; ``answer`` decides each request's fate."""

    def __init__(self, role: str, version: str = "v1", owner: Any = None,
                 answer: Callable[[str, Any], Any] | None = None) -> None:
        self.pid = next(_pids)
        self.role = role
        self.version = version
        self.instance_id = f"{role}-{self.pid}"
        self.restarts = 0
        self.alive = True
        self.culprit: str | None = None
        self.suspects: list[str] = []
        self.max_concurrency = 1
        self.death_reason: str | None = None
        self.sent: list[Message] = []
        self.closed = False
        self.exited: asyncio.Future[Any] | None = None
        self.owner = owner
        self.answer = answer or (lambda request_id, payload: {"echo": payload})
        self._pending: dict[str, asyncio.Future[Any]] = {}
        self._waiters: dict[str, asyncio.Future[Message]] = {}
        self._idle = asyncio.Event()
        self._idle.set()

    # -- the InstanceHandle surface the host uses -------------------------

    async def send(self, message: Message) -> None:
        if not self.alive:
            raise InstanceDied(self.death_reason or "dead")
        self.sent.append(message)
        if message.type == "checkpoint":  # as a real instance does, through on_checkpoint
            self.notify("checkpoint_sent", message)

    def send_frame_now(self, frame: bytes) -> None:
        # The journal's tail: recorded at once, in call order, as a real handle queues it.
        if self.alive:
            self.sent.append(decode_payload(frame[PREFIX_SIZE:]))

    async def send_frame(self, frame: bytes) -> None:
        # An encoded frame (what the journal forwards to a standby), decoded as strictly.
        await self.send(decode_payload(frame[PREFIX_SIZE:]))

    async def request(self, request_id: str, payload: Any, deadline_s: float,
                      on_event: Any = None) -> Any:
        return await self._call(request_id, payload)

    async def feedback(self, feedback_id: str, feedback: dict[str, Any]) -> Any:
        return await self._call(feedback_id, feedback)

    async def _call(self, call_id: str, payload: Any) -> Any:
        if not self.alive:
            raise InstanceDied(self.death_reason or "dead")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[call_id] = future
        self._idle.clear()
        try:
            outcome = self.answer(call_id, payload)
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            elif outcome is not PENDING:
                future.set_result(outcome)
            return await future
        finally:
            self._pending.pop(call_id, None)
            if not self._pending:
                self._idle.set()

    def waiter(self, name: str) -> asyncio.Future[Message]:
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._waiters[name] = future
        return future

    def notify(self, name: str, message: Message) -> None:
        future = self._waiters.pop(name, None)
        if future is not None and not future.done():
            future.set_result(message)

    def kill(self, reason: str) -> None:
        if not self.alive:
            return
        self.alive = False
        self.death_reason = reason
        self.culprit = next(iter(self._pending), None)
        self.suspects = list(self._pending)
        for future in [*self._pending.values(), *self._waiters.values()]:
            if not future.done():
                future.set_exception(InstanceDied(reason))
                future.exception()
        if self.owner is not None:
            self.owner.on_death(self, reason)

    def kill_if_silent(self, timeout: float, now: float) -> None:
        pass

    async def close(self) -> None:
        self.closed = True

    async def drained(self) -> None:
        await self._idle.wait()

    @property
    def in_flight(self) -> list[str]:
        return list(self._pending)

    def describe(self) -> dict[str, Any]:
        return {"instance_id": self.instance_id, "role": self.role, "pid": self.pid}

    # -- test helpers ------------------------------------------------------

    def answer_pending(self, request_id: str, output: Any) -> None:
        self._pending[request_id].set_result(output)

    def types_sent(self) -> list[str]:
        return [m.type for m in self.sent]


#: an ``answer`` result that leaves the request pending until the test acts
PENDING = object()


def handler_error(kind: str = "ValueError", message: str = "no") -> HandlerError:
    return HandlerError(kind, message, "")


class FakeZygote:
    def __init__(self, version: str) -> None:
        self.version = version
        self.pid = next(_pids)
        self.alive = True
        self.closed = False
        self._gone: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def lost(self) -> asyncio.Future[str]:
        return self._gone

    def die(self, reason: str = "killed by SIGKILL") -> None:
        self.alive = False
        if not self._gone.done():
            self._gone.set_result(reason)

    async def close(self) -> None:
        self.closed = True
        self.die("closed")


class FakeFactory:
    """Forks FakeInstances; ``fail_next`` makes the next spawns raise what it holds."""

    def __init__(self, config: Any, version: str = "v1", owner: Any = None,
                 answer: Callable[[str, Any], Any] | None = None) -> None:
        self.config = config
        self.version = version
        self.owner = owner
        self.answer = answer
        self.zygote: FakeZygote | None = None
        self.restarts = 0
        self.spawned: list[FakeInstance] = []
        self.fail_next: list[BaseException] = []
        self.zygotes_started: list[str] = []

    async def ensure_zygote(self) -> None:
        if self.zygote is None or not self.zygote.alive:
            self.zygote = FakeZygote(self.version)

    async def start_zygote(self, agent: Path, version: str) -> FakeZygote:
        self.zygotes_started.append(version)
        return FakeZygote(version)

    def serve(self, zygote: Any, agent: Path, version: str) -> tuple[Any, Path, str]:
        old = self.zygote, self.config.agent, self.version
        self.zygote, self.config.agent, self.version = zygote, agent, version
        return old

    async def spawn(self, role: str) -> FakeInstance:
        await asyncio.sleep(0)
        if self.fail_next:
            raise self.fail_next.pop(0)
        instance = FakeInstance(role, self.version, self.owner, self.answer)
        instance.restarts = self.restarts
        self.spawned.append(instance)
        return instance

    def zygote_running(self) -> bool:
        return self.zygote is not None and self.zygote.alive

    def env(self) -> dict[str, str]:
        return {}

    async def close(self) -> None:
        if self.zygote is not None:
            await self.zygote.close()


class FakeBook:
    """A VersionBook with one previous good version to fall back to (or none)."""

    def __init__(self, previous: str | None = "v0") -> None:
        self.previous = previous
        self.rejected: list[tuple[str, str]] = []
        self.good: list[str] = []

    def previous_good(self, version: str) -> Any:
        if self.previous is None:
            return None
        return type("Record", (), {"id": self.previous})()

    def reject(self, version: str, reason: str) -> None:
        self.rejected.append((version, reason))

    def materialize(self, record: Any) -> Path:
        return Path(f"/versions/{record.id}.py")

    def mark_good(self, version: str) -> None:
        self.good.append(version)


#: deadlock guard for a unit test's event loop, not a speed limit
TEST_GUARD_S = 30.0


def async_test(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test body in a fresh event loop, under a deadlock guard."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(asyncio.wait_for(fn(*args, **kwargs), TEST_GUARD_S))

    return wrapper
