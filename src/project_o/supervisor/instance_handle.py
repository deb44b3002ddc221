"""The supervisor's side of one instance: its socket, its requests, its fate.

::

    supervisor                         instance (forked from the zygote)
    ──────────                         ────────
    request(id, input) ── request ──►  handler runs
          ▲             ◄─ wal_entry ─ ctx.memory.set(...)   (owner journals it,
          │             ── wal_ack ──►                         then acks)
          │  on_event ◄── stream ────  ctx.emit(event)       (only if on_event given)
          └── future ◄── response ───  return value
    feedback(id, ...) ─ feedback ──►  on_feedback hooks (journal the same way)
          └── future ◄── response ───
    owner.on_llm_call ◄─ llm_call ──  ctx.llm (the proxy answers with llm_token*, llm_result)
                        ◄─ heartbeat ─ main loop (stops if the handler hangs)

Everything the instance sends is untrusted: a frame that is too big for
its type (:func:`~.bounds.instance_frame_limits`, checked before its body
is read), does not decode, has a type an instance may not send or a
malformed field, or passes one of the instance's quotas
(:class:`~.bounds.InstanceQuota`) kills the instance (never the
supervisor) with the reason and fails its pending requests with
:class:`InstanceDied`, so the owner can re-dispatch them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, Protocol

from project_o.errors import ProjectOError, ProtocolError
from project_o.runtime.procctl import kill_group
from project_o.supervisor.api import EventSink
from project_o.supervisor.bounds import InstanceQuota, Quotas, instance_frame_limits
from project_o.wire import FrameLimits, Message, read_frame_async, write_message_async
from project_o.wire.fd_passing import write_message_with_fd_async

if TYPE_CHECKING:
    from project_o.runtime.zygote_client import ExitStatus

__all__ = ["HandlerError", "InstanceDied", "InstanceHandle", "InstanceOwner"]

logger = logging.getLogger(__name__)


class InstanceDied(ProjectOError):
    """The instance serving a request died before answering (the request may be retried)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class HandlerError(ProjectOError):
    """The agent's handler raised; the instance is fine and the error goes to the caller."""

    def __init__(self, kind: str, message: str, traceback: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message
        self.traceback = traceback


class InstanceOwner(Protocol):
    """What the handle calls back into (the agent host)."""

    def on_wal_entry(
        self, instance: InstanceHandle, message: Message,
    ) -> Coroutine[Any, Any, None] | None:
        """Take one write: at once (None), or as a coroutine the handle runs as a task."""
    async def on_checkpoint(self, instance: InstanceHandle, message: Message) -> None: ...
    def on_llm_call(self, instance: InstanceHandle, message: Message) -> None: ...
    def on_death(self, instance: InstanceHandle, reason: str) -> None: ...


class InstanceHandle:
    """One live instance as the supervisor sees it."""

    def __init__(
        self, *, pid: int, role: str, version: str, instance_id: str,
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
        owner: InstanceOwner, max_frame_size: int, limits: FrameLimits | None = None,
        quotas: Quotas | None = None,
    ) -> None:
        """``limits``: what it may send (default: :func:`.instance_frame_limits` of
        ``max_frame_size``); ``quotas``: its write and stream quotas (default: :class:`Quotas`).
        """
        self.pid = pid
        self.role = role
        self.version = version
        self.instance_id = instance_id
        self.restarts = 0
        self.started = time.time()
        self.last_heartbeat = time.monotonic()
        self.last_heartbeat_wall = time.time()
        self.rss_bytes = 0
        self.applied_sequence = 0
        self.alive = True
        self.death_reason: str | None = None
        #: the request being handled when the instance died (the oldest unanswered)
        self.culprit: str | None = None
        #: every request in flight when it died (any of them may have killed it)
        self.suspects: list[str] = []
        #: requests it serves at once, as its hello said (the dispatcher sends no more)
        self.max_concurrency = 1
        # Memory writes being journaled: each its own task, started in arrival
        # order (which is the WAL's), so a slow fsync never stops the reading.
        self._writes: set[asyncio.Task[None]] = set()
        self._reader = reader
        self._writer = writer
        self._owner = owner
        self._max_frame_size = max_frame_size
        self._limits = limits if limits is not None else instance_frame_limits(max_frame_size)
        #: what it may write and stream; the journal charges its writes here
        self.quota = InstanceQuota(quotas)
        # request id -> future, oldest first
        self._pending: OrderedDict[str, asyncio.Future[Any]] = OrderedDict()
        # Ids sent and not answered, oldest first: the pending ones and those whose
        # caller gave up (a deadline) while the instance still runs them.
        self._unanswered: OrderedDict[str, None] = OrderedDict()
        self._listeners: dict[str, EventSink] = {}
        self._waiters: dict[str, asyncio.Future[Message]] = {}
        self._send_lock = asyncio.Lock()
        self._reader_task: asyncio.Task[None] | None = None
        #: set while nothing is in flight (a reload drains the old main on it)
        self._idle = asyncio.Event()
        self._idle.set()
        #: how the process ended, as its zygote reports it (set by whoever forked it)
        self.exited: asyncio.Future[ExitStatus] | None = None

    # -- lifecycle ------------------------------------------------------

    def start_reading(self) -> None:
        """Start dispatching what the instance sends."""
        self._reader_task = asyncio.create_task(self._read_loop(), name=f"read-{self.instance_id}")

    def waiter(self, name: str) -> asyncio.Future[Message]:
        """A future for the next frame of type ``name`` (or a :meth:`notify` of it).

        Registered at once, so a frame that arrives before the caller awaits
        is not missed.
        """
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._waiters[name] = future
        return future

    def notify(self, name: str, message: Message) -> None:
        """Resolve the waiter registered under ``name``, if any."""
        future = self._waiters.pop(name, None)
        if future is not None and not future.done():
            future.set_result(message)

    def kill(self, reason: str) -> None:
        """SIGKILL the instance's whole process group and fail its pending work."""
        if not self.alive:
            return
        # The instance called setsid(), so its pid is its process group: this
        # also takes any children it forked (a fork bomb, a stray helper).
        kill_group(self.pid)
        self._die(reason)

    def kill_if_silent(self, timeout: float, now: float) -> None:
        """The hang check: kill the instance if no heartbeat came for ``timeout`` s."""
        silent = now - self.last_heartbeat
        if self.alive and silent > timeout:
            self.kill(f"hang: no heartbeat for {silent:.2f} s (limit {timeout:g} s)")

    async def close(self) -> None:
        """Stop reading and close the socket (after kill or shutdown)."""
        for write in list(self._writes):
            write.cancel()
        if self._reader_task is not None:
            self._reader_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader_task
        with contextlib.suppress(Exception):
            self._writer.close()

    # -- requests -------------------------------------------------------

    async def send(self, message: Message) -> None:
        """Send one frame; a broken socket marks the instance dead."""
        await self._send(lambda: write_message_async(self._writer, message,
                                                     self._max_frame_size))

    def send_frame_now(self, frame: bytes) -> None:
        """Queue one encoded frame at once, in call order (no drain): the WAL tail.

        A frame is written whole by one call, so it never interleaves with
        another; a broken socket shows on the next read or send.
        """
        if self.alive:
            self._writer.write(frame)

    async def send_frame(self, frame: bytes) -> None:
        """Send one frame already encoded (what the supervisor only forwards); as :meth:`send`."""

        async def write() -> None:
            self._writer.write(frame)
            await self._writer.drain()

        await self._send(write)

    async def send_with_fd(self, message: Message, fd: int) -> None:
        """Send one frame with ``fd`` attached to its first bytes (SCM_RIGHTS); as :meth:`send`."""
        await self._send(lambda: write_message_with_fd_async(self._writer, message, fd,
                                                             self._max_frame_size))

    async def _send(self, write: Callable[[], Awaitable[None]]) -> None:
        """Run ``write`` alone on the socket; InstanceDied if the instance is (or goes) dead."""
        if not self.alive:
            raise InstanceDied(self.death_reason or "instance is dead")
        try:
            async with self._send_lock:
                await write()
        except (OSError, ConnectionError, ProtocolError) as exc:
            # ProtocolError: the wire layer reports a reset peer as ConnectionClosed.
            self._die(f"socket broke while sending: {exc}")
            raise InstanceDied(self.death_reason or str(exc)) from exc

    async def request(
        self, request_id: str, payload: Any, deadline_s: float,
        on_event: EventSink | None = None,
    ) -> Any:
        """Send a request and await its output (raises InstanceDied / HandlerError).

        With ``on_event``, the request asks the instance to stream: each event
        its handler emits is passed to ``on_event`` before the output returns.
        """
        data = {"id": request_id, "input": payload, "deadline_ms": int(deadline_s * 1000)}
        if on_event is None:
            return await self._call(request_id, Message("request", data))
        self._listeners[request_id] = on_event
        try:
            return await self._call(request_id, Message("request", {**data, "stream": True}))
        finally:
            self._listeners.pop(request_id, None)
            self.quota.request_done(request_id)

    async def feedback(self, feedback_id: str, feedback: dict[str, Any]) -> Any:
        """Have the instance run the agent's feedback hooks on ``feedback``.

        Returns the hooks' reports once they ran (their memory writes are
        journaled by then); raises InstanceDied, or HandlerError if the
        instance refused the feedback.
        """
        return await self._call(
            feedback_id, Message("feedback", {**feedback, "id": feedback_id})
        )

    async def _call(self, call_id: str, message: Message) -> Any:
        """Send ``message`` and await the response or error frame with ``call_id``."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[call_id] = future
        self._unanswered[call_id] = None
        self._idle.clear()
        try:
            await self.send(message)
            return await future
        finally:
            self._pending.pop(call_id, None)
            if not self._pending:
                self._idle.set()
            # If send() raised, the death it reported also failed this future: the
            # caller has that error already, so the future's copy is seen, not orphaned.
            _consume(future)

    async def drained(self) -> None:
        """Return once nothing is in flight (at once if nothing is; also when it dies)."""
        await self._idle.wait()

    @property
    def in_flight(self) -> list[str]:
        """Request ids sent and awaited, oldest first."""
        return list(self._pending)

    @property
    def expired(self) -> list[str]:
        """Request ids whose caller gave up while the instance still runs them, oldest first.

        Nothing awaits them, but each holds a place in the instance until it
        answers: forged heartbeats cannot hide them, so the dispatcher judges
        a stuck instance by these.
        """
        return [call_id for call_id in self._unanswered if call_id not in self._pending]

    # -- reading --------------------------------------------------------

    async def _read_loop(self) -> None:
        try:
            while self.alive:
                message, size = await read_frame_async(self._reader, limits=self._limits)
                await self._dispatch(message, size)
        except QuotaExceeded as exc:
            self.kill(str(exc))
        except ProtocolError as exc:
            clean = getattr(exc, "clean", None)
            reason = "socket closed (instance exited)" if clean is not None else (
                f"protocol violation: {exc}")
            self.kill(reason)
        except (OSError, ConnectionError) as exc:
            self.kill(f"socket error: {exc}")
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - an instance must never crash us
            self.kill(f"protocol violation: {type(exc).__name__}: {exc}")

    async def _dispatch(self, message: Message, size: int) -> None:
        kind = message.type
        waiter = self._waiters.get(kind)
        self.notify(kind, message)
        if kind == "heartbeat":
            self._on_heartbeat(message.data)
        elif kind in ("response", "error"):
            self._on_answer(kind, message.data)
        elif kind == "stream":
            self._on_stream(message.data, size)
        elif kind == "wal_entry":
            self._journal(message)
        elif kind == "checkpoint":
            await self._owner.on_checkpoint(self, message)
        elif kind == "llm_call":
            self._owner.on_llm_call(self, message)  # answered later, by llm_result
        elif kind not in ("hello", "metrics") and waiter is None:
            raise ProtocolError(f"an instance may not send {kind!r}")

    def _journal(self, message: Message) -> None:
        """Hand one write to the owner; what it must await runs as a task (in the order made)."""
        try:
            pending = self._owner.on_wal_entry(self, message)
        except Exception as exc:  # as _journaled: an instance never crashes the reader
            logger.error("journaling a write of %s failed", self.instance_id, exc_info=exc)
            self.kill(f"journaling its write failed: {exc!r}")
            return
        if pending is None:
            return
        task = asyncio.create_task(pending, name=f"journal-{self.instance_id}")
        self._writes.add(task)
        task.add_done_callback(self._journaled)

    def _journaled(self, task: asyncio.Task[None]) -> None:
        self._writes.discard(task)
        if not task.cancelled() and task.exception() is not None:
            error = task.exception()
            logger.error("journaling a write of %s failed", self.instance_id, exc_info=error)
            self.kill(f"journaling its write failed: {error!r}")

    def _on_heartbeat(self, data: dict[str, Any]) -> None:
        fields = [data.get(name) for name in _HEARTBEAT_FIELDS]
        counts = [v for v in fields if isinstance(v, int) and not isinstance(v, bool) and v >= 0]
        if len(counts) != len(fields):
            raise ProtocolError(f"heartbeat fields {list(_HEARTBEAT_FIELDS)} must be "
                                "non-negative ints")
        self.last_heartbeat = time.monotonic()
        self.last_heartbeat_wall = time.time()
        _, self.rss_bytes, self.applied_sequence = counts

    def _on_stream(self, data: dict[str, Any], size: int) -> None:
        request_id = data.get("id")
        if not isinstance(request_id, str):
            raise ProtocolError("stream frame without a string id")
        listener = self._listeners.get(request_id)
        over = (self.quota.charge_stream(request_id, size) if listener is not None
                else self.quota.charge_stray_stream(size))
        if over is not None:
            raise QuotaExceeded(over)
        if listener is None:
            return  # the request was answered or gave up meanwhile: drop the event
        try:
            listener(data.get("event"))
        except Exception:  # the listener's bug must not kill the instance
            self._listeners.pop(request_id, None)
            logger.exception("event listener of request %s failed; it gets no more events",
                             request_id)

    def _on_answer(self, kind: str, data: dict[str, Any]) -> None:
        request_id = data.get("id")
        if not isinstance(request_id, str):
            raise ProtocolError(f"{kind} frame without a string id")
        self._unanswered.pop(request_id, None)
        future = self._pending.get(request_id)
        if future is None or future.done():
            return  # an answer after its deadline: drop it
        self.last_heartbeat = time.monotonic()  # an answer is progress too
        if kind == "response":
            future.set_result(data.get("output"))
        else:
            future.set_exception(HandlerError(
                str(data.get("kind", "Error")), str(data.get("message", "")),
                str(data.get("traceback", "")),
            ))

    def _die(self, reason: str) -> None:
        if not self.alive:
            return
        self.alive = False
        self.death_reason = reason
        # An expired request it was still running may have killed it as well.
        self.culprit = next(iter(self._unanswered), None)
        self.suspects = list(self._unanswered)
        for future in self._pending.values():
            if not future.done():
                future.set_exception(InstanceDied(reason))
        for waiter in self._waiters.values():
            if not waiter.done():
                waiter.set_exception(InstanceDied(reason))
                # The owner hears of the death through on_death; a waiter whose
                # coroutine moved on (a send that failed first) must not log it again.
                _consume(waiter)
        self._owner.on_death(self, reason)

    def describe(self) -> dict[str, Any]:
        """The instance as `GET /v1/status` shows it."""
        return {
            "instance_id": self.instance_id, "role": self.role, "pid": self.pid,
            "version": self.version, "restarts": self.restarts,
            "last_heartbeat": self.last_heartbeat_wall, "rss_bytes": self.rss_bytes,
            "applied_sequence": self.applied_sequence, "in_flight": len(self._pending),
        }


#: what a heartbeat carries, each a non-negative int
_HEARTBEAT_FIELDS = ("beat", "rss_bytes", "last_sequence")


class QuotaExceeded(ProjectOError):
    """Raised inside the read loop: the instance passed a quota; it is killed with the reason."""


def _consume(future: asyncio.Future[Any]) -> None:
    """Mark a settled future's exception as seen (whoever awaits it still gets it)."""
    if future.done() and not future.cancelled():
        future.exception()
