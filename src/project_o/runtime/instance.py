"""The instance: one forked process serving one agent over its socket.

::

    supervisor                                      instance (its event loop + a thread pool)
        ◄── hello {pid, version, role, instance_id, max_concurrency, handler}
        ──► restore {checkpoint, entries, last_sequence}    sealed checkpoint copy (its fd
                                                            comes with the frame) + WAL replay
        ◄── heartbeat {beat, rss_bytes, last_sequence}      the first one means "restored",
                                                            then one every interval
        ──► request {id, input, deadline_ms, stream} ─────► handler(ctx, input): up to
                                                            max_concurrency at once
        ◄── wal_entry {id, operation, data}  ◄───────────── ctx.memory.set / aset ...
        ──► wal_ack {id, sequence} ────────────────────────► applied in WAL order; back to
                                                            the agent code that wrote
        ◄── stream {id, event}               ◄───────────── ctx.emit(event), if stream
        ◄── response {id, output} | error {id, kind, message, traceback}
        ──► feedback {id, request_id, score, comment, version}
                                            ───────────────► agent.feedback(ctx, feedback):
                                                              the on_feedback hooks, whose
                                                              writes journal as above
        ◄── response {id, output: [report per hook]} | error {id, ...}
        ──► checkpoint {id}     ◄── checkpoint {id, state, last_sequence}
        ◄── checkpoint {id, state, last_sequence}           every N acknowledged writes
        ──► wal_entry {sequence, operation, data}           the other mains' writes (WAL order)
        ──► promote {role}                                  standby becomes a server
        ◄── evolution_intent {id, hypothesis, source|files|operator, params}
                                                            ctx.evolve(...): waits for
        ──► evolution_result {id, experiment_id, status, reason}   the answer with its id;
        ──► evolution_result {experiment_id, status, reason}       the outcome comes later
        ◄── llm_call {id, messages, tools, stream, options} ctx.llm: the supervisor calls
        ──► llm_token {id, text} ... llm_result {id, ...}   the model (runtime/llm_link.py)
        ──► shutdown                                        exit 0

The fields of each message are tabled in docs/design.md ("Wire protocol").

Concurrency. After the restore the instance runs an asyncio event loop
(poll-based, so it adds no descriptor but its wakeup pair). It reads the
socket, sends the heartbeats and admits up to ``max_concurrency``
requests (the supervisor queues the rest; the instance queues any
surplus too). An ``async def`` handler runs as a task on the loop; a
plain one runs on a worker thread of a bounded pool. Every frame is
matched by its ``id``: answers by request id, acks by write id, the
supervisor's answers to an intent by intent id (:meth:`Instance.await_reply`
serves any such request/response pair). Writes are applied in WAL order
(:mod:`project_o.runtime.write_order`).

Hangs. Heartbeats come only from the event loop, so an ``async def``
handler that blocks the loop (``time.sleep``, a busy loop) stops them. A
worker thread that has not come back to the runtime (a write, an event,
a tool or LLM wait, its answer) for :data:`STALL_BEATS` intervals stops
them too, as a plain handler stuck in a loop always has: the supervisor
kills the instance after its heartbeat timeout.

A handler's exception becomes an ``error`` frame and the instance goes on;
``SystemExit`` from agent code ends the process with its code. Anything
the supervisor does wrong ends it with a code of its own (sysexits.h), so
the zygote's ``exited`` report says what happened::

    0   shutdown                    65  the checkpoint could not be read
    70  a bug in this runtime       74  the supervisor's socket closed or broke
    76  the supervisor broke the protocol
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import faulthandler
import functools
import inspect
import itertools
import os
import selectors
import socket
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Final

from project_o.agent.dsl import Agent
from project_o.agent.kit import AgentKit
from project_o.agent.store import APPLIED
from project_o.errors import (
    ConnectionClosed,
    FrameTooLarge,
    InvalidArgument,
    ProtocolError,
    VaultError,
)
from project_o.llm.config import LLMConfig
from project_o.llm.remote import RemoteClient
from project_o.runtime.channel import Channel
from project_o.runtime.config import InstanceConfig
from project_o.runtime.llm_link import LLMLink
from project_o.runtime.outbox import Outbox
from project_o.runtime.procctl import parent_death_signal, set_parent_death_signal
from project_o.runtime.workers import Workers, share_malloc_arenas
from project_o.runtime.write_order import PendingWrite, WriteOrder
from project_o.vault.checkpoint import read_checkpoint
from project_o.wire import Message, MessageType, ensure_packable

__all__ = [
    "EXIT_CHANNEL_LOST",
    "EXIT_OK",
    "EXIT_PROTOCOL",
    "EXIT_RESTORE_FAILED",
    "EXIT_RUNTIME_BUG",
    "RESTORE_ERROR_ID",
    "STALL_BEATS",
    "STANDBY",
    "Instance",
    "run_instance",
]

EXIT_OK: Final = 0  # shutdown requested
EXIT_RESTORE_FAILED: Final = 65  # EX_DATAERR: the checkpoint could not be read
EXIT_RUNTIME_BUG: Final = 70  # EX_SOFTWARE: a bug in this runtime, not in agent code
EXIT_CHANNEL_LOST: Final = 74  # EX_IOERR: the supervisor's socket closed or broke
EXIT_PROTOCOL: Final = 76  # EX_PROTOCOL: the supervisor broke the protocol

#: the role that tails the WAL and serves nothing until promoted
STANDBY: Final = "standby"
#: the id of the error frame sent when the restore fails (no request has it)
RESTORE_ERROR_ID: Final = "restore"
#: what a feedback frame tells the agent's hooks (the frame's own id aside)
FEEDBACK_FIELDS: Final = ("request_id", "score", "comment", "version")
#: caps on what an error frame carries, so a huge traceback cannot blow a frame
MAX_TRACEBACK_CHARS: Final = 64 * 1024
MAX_MESSAGE_CHARS: Final = 4 * 1024
#: how long ctx.evolve waits for the supervisor to say what it did with the intent
#: (it answers once the experiment is recorded, before any candidate runs)
EVOLVE_ANSWER_TIMEOUT: Final = 10.0
#: experiment outcomes remembered by the instance
EVOLUTION_RESULTS_KEPT: Final = 100
#: heartbeat intervals a worker thread may go without coming back to the
#: runtime before the loop stops beating (a plain handler stuck in a loop)
STALL_BEATS: Final = 1
#: threads an ``async def`` agent's blocking calls (ctx.tools.acall, ctx.llm.achat,
#: ctx.workflows.arun) share at most
OFFLOAD_THREADS: Final = 32
_PAGE_SIZE: Final = os.sysconf("SC_PAGE_SIZE")
# Longest single wait on the socket before any beat is due (before the restore).
_IDLE_WAIT: Final = 3600.0


class _Exit(BaseException):
    """Unwinds to :meth:`Instance.run` with an exit code.

    A BaseException, like SystemExit, so agent code's ``except Exception``
    cannot swallow it on its way out of a memory write.
    """

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code


class Instance:
    """The instance's state machine; :meth:`run` returns the exit code."""

    def __init__(
        self,
        channel: Channel,
        agent: Agent,
        *,
        version: str,
        role: str,
        instance_id: str,
        config: InstanceConfig,
        params: dict[str, Any] | None = None,
    ) -> None:
        self._channel = channel
        self._agent = agent
        self._version = version
        self.role = role
        self._instance_id = instance_id
        self._config = config
        self._outbox = Outbox(channel, self._on_broken_socket)
        self._writes = WriteOrder(self._send_entry, self._apply_live, self._on_released,
                                  thread_applies=lambda operation: self._state.locked(operation),
                                  apply_tail=self._apply_tail)
        self._kit = AgentKit(agent, self._journal, params=params,
                             stub_side_effects=config.stub_side_effects, ajournal=self._ajournal)
        self._kit.idle = self._progress  # slow tools and LLM calls are progress
        self._kit.evolve = self._evolve
        self._inbox: deque[Message] = deque()
        #: ctx.llm's calls: made by the supervisor, the key never here; the loop
        #: routes their answers (the only reader of the socket)
        self.llm_link = LLMLink(lambda kind, data: self._send(kind, **data),
                                waiting=self._waiting, on_loop=self._on_loop_thread,
                                slice_s=config.heartbeat_interval / 2)
        if config.llm is not None:
            self._kit.use_llm(LLMConfig(**config.llm), client=RemoteClient(self.llm_link))
        self._intent_ids = itertools.count(1)
        #: outcomes of experiments this agent asked for (``evolution_result`` frames)
        self.evolution_results: deque[dict[str, Any]] = deque(maxlen=EVOLUTION_RESULTS_KEPT)
        self._state = self._kit.state
        self._fatal: _Exit | None = None
        self._beats = itertools.count(1)
        self._checkpoint_ids = itertools.count(1)
        self._writes_since_checkpoint = 0
        self._checkpointing = True
        self._checkpoints_wanted: deque[Any] = deque()
        self.last_checkpoint_id: Any = None
        # -- concurrency (set up when serving starts) --
        self.max_concurrency = agent.max_concurrency
        self._queued: deque[dict[str, Any]] = deque()
        self._running = 0
        self._tasks: set[asyncio.Future[Any]] = set()
        #: worker thread -> when it last came back to the runtime (plain handlers)
        self._busy: dict[int, float] = {}
        #: answers the loop routes by id to whoever waits (a thread or a task)
        self._replies: dict[Any, concurrent.futures.Future[dict[str, Any]]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        #: plain handlers' threads (see project_o.runtime.workers)
        self._workers = Workers("agent")
        self._stopped: asyncio.Future[_Exit] | None = None

    @property
    def last_sequence(self) -> int:
        """The newest WAL sequence the stores hold (restored, tailed or written)."""
        return self._writes.last_sequence

    @last_sequence.setter
    def last_sequence(self, sequence: int) -> None:
        self._writes.last_sequence = sequence

    # -- lifecycle ------------------------------------------------------

    def run(self) -> int:
        """Say hello, restore, serve until shutdown; return the exit code."""
        try:
            self._send(
                MessageType.HELLO,
                pid=os.getpid(),
                version=self._version,
                role=self.role,
                instance_id=self._instance_id,
                max_concurrency=self.max_concurrency,
                handler="async" if self._agent.is_async else "sync",
            )
            self._restore(self._await_restore())
            self._beat()  # the supervisor's signal that the restore is done
            raise self._serve()
        except _Exit as exit_:
            if exit_.code != EXIT_OK:
                print(f"instance {self._instance_id}: {exit_}", file=sys.stderr)
            return exit_.code

    def _serve(self) -> _Exit:
        """Run the event loop until shutdown or a fatal error; how it ended."""
        # PollSelector: poll() needs no descriptor of its own (epoll would).
        loop = asyncio.SelectorEventLoop(selectors.PollSelector())
        share_malloc_arenas()  # before any thread: see project_o.runtime.workers
        threads = min(self.max_concurrency, OFFLOAD_THREADS)
        # The parent-death signal is a per-thread setting the kernel acts on
        # for the whole process; workers repeat the main thread's, so agent
        # code sees the same protection whichever thread it runs on.
        death_signal = parent_death_signal()
        self._pool = concurrent.futures.ThreadPoolExecutor(
            threads, "offload", initializer=set_parent_death_signal, initargs=(death_signal,))
        self._workers = Workers("agent", lambda: set_parent_death_signal(death_signal))
        loop.set_default_executor(self._pool)  # asyncio.to_thread: ctx.tools.acall & co
        self._loop, self._loop_thread = loop, threading.get_ident()
        self._outbox.attach(loop)
        asyncio.set_event_loop(loop)
        try:
            return loop.run_until_complete(self._serve_async())
        finally:
            with contextlib.suppress(ConnectionClosed):
                self._outbox.detach()  # what the last pass sent (a final answer)
            # Threads stuck in agent code are left behind: the process exits.
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._workers.stop()

    async def _serve_async(self) -> _Exit:
        loop = asyncio.get_running_loop()
        self._stopped = loop.create_future()
        loop.add_reader(self._channel.fileno(), self._on_readable)
        self._dispatch_all([*self._inbox, *self._channel.take_ready()])
        self._inbox.clear()
        loop.call_later(self._config.heartbeat_interval, self._beat_tick)
        try:
            return await self._stopped
        finally:
            loop.remove_reader(self._channel.fileno())
            self._writes.fail(self._fatal or _Exit(EXIT_OK, "stopping"))

    def _stop(self, exit_: _Exit) -> None:
        """End serving with ``exit_`` (the first reason wins)."""
        self._fatal = self._fatal or exit_
        if self._stopped is not None and not self._stopped.done():
            self._stopped.set_result(self._fatal)

    def _on_readable(self) -> None:
        try:
            messages = self._channel.read_available()
        except ConnectionClosed as exc:
            self._stop(self._fail(EXIT_CHANNEL_LOST, f"supervisor socket closed: {exc}"))
            return
        except ProtocolError as exc:
            self._stop(self._violation(str(exc)))
            return
        self._dispatch_all(messages)

    def _dispatch_all(self, messages: list[Message]) -> None:
        handlers = self._dispatch_table()
        try:
            for message in messages:
                handler = handlers.get(message.type)
                if handler is None:
                    raise self._violation(
                        f"the supervisor may not send {message.type!r} "
                        f"to an instance in role {self.role!r}"
                    )
                handler(message.data)
                self._checkpoint_if_due()
        except _Exit as exit_:
            self._stop(exit_)
        except Exception as exc:  # noqa: BLE001 - a bug here: end loudly, drop no frame silently
            self._stop(_Exit(EXIT_RUNTIME_BUG, f"handling frames failed: {exc!r}"))

    def _dispatch_table(self) -> dict[str, Callable[[dict[str, Any]], object]]:
        return {
            MessageType.REQUEST: self._on_request,
            MessageType.FEEDBACK: self._on_feedback,
            MessageType.WAL_ACK: self._on_ack,
            MessageType.CHECKPOINT: self._on_checkpoint_request,
            MessageType.CHECKPOINT_ACK: self._on_checkpoint_ack,
            MessageType.WAL_ENTRY: self._on_tail_entry,
            MessageType.PROMOTE: self._on_promote,
            MessageType.EVOLUTION_RESULT: self._on_evolution_result,
            # Streamed pieces and answers of ctx.llm calls, to the call with their id.
            MessageType.LLM_TOKEN: self._on_llm_frame(MessageType.LLM_TOKEN),
            MessageType.LLM_RESULT: self._on_llm_frame(MessageType.LLM_RESULT),
            MessageType.SHUTDOWN: lambda data: self._stop(_Exit(EXIT_OK, "shutdown")),
        }

    # -- restore (before the loop runs: blocking) -------------------------

    def _await_restore(self) -> dict[str, Any]:
        while True:
            message = self._receive()
            if message is None:
                continue
            if message.type == MessageType.RESTORE:
                return message.data
            if message.type == MessageType.SHUTDOWN:
                raise _Exit(EXIT_OK, "shutdown before restore")
            self._inbox.append(message)  # a tail entry or request sent early

    def _restore(self, data: dict[str, Any]) -> None:
        checkpoint = data.get("checkpoint")
        if checkpoint is not None:
            if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("id"), str):
                raise self._violation(
                    f"restore checkpoint must be {{id}} or None, got {checkpoint!r}"
                )
            self._load_checkpoint(checkpoint["id"])
        entries = data.get("entries") or []
        if not isinstance(entries, list):
            raise self._violation(f"restore entries must be a list, got {type(entries).__name__}")
        for entry in entries:
            if not isinstance(entry, dict):
                raise self._violation(f"a restore entry must be a map, got {entry!r}")
            self._apply_entry(entry)
        last = data.get("last_sequence")
        if isinstance(last, int) and last > self.last_sequence:
            self.last_sequence = last

    def _load_checkpoint(self, checkpoint_id: str) -> None:
        """Restore from the sealed copy that came with the restore frame (never a vault path)."""
        fd = self._channel.take_fd()
        if fd is None:
            raise self._violation("the restore frame names a checkpoint but carries no descriptor")
        try:
            with open(fd, "rb", buffering=0) as file:
                info, payload = read_checkpoint(file, f"checkpoint {checkpoint_id}")
            self._state.load(payload)
        except (VaultError, OSError, InvalidArgument) as exc:
            self._send_error(RESTORE_ERROR_ID, exc)
            raise _Exit(EXIT_RESTORE_FAILED,
                        f"cannot restore from checkpoint {checkpoint_id}: {exc}") from exc
        self.last_sequence = info.last_sequence

    def _apply_entry(self, entry: Mapping[str, Any]) -> None:
        sequence, operation = entry.get("sequence"), entry.get("operation")
        if (
            isinstance(sequence, bool)
            or not isinstance(sequence, int)
            or not isinstance(operation, str)
        ):
            raise self._violation(
                f"a WAL entry needs an int sequence and a str operation: {entry!r}"
            )
        if sequence <= self.last_sequence:
            return  # already in the checkpoint or applied: replay is idempotent
        if self._state.owns(operation):
            try:
                self._state.apply(operation, entry.get("data") or {})
            except InvalidArgument as exc:
                raise self._violation(f"WAL entry {sequence} cannot be applied: {exc}") from exc
        # Other operations belong to layers that do not exist yet: skip, keep the order.
        self.last_sequence = sequence

    # -- requests -------------------------------------------------------

    def _on_request(self, data: dict[str, Any]) -> object:
        if self.role == STANDBY:
            raise self._violation("a standby serves no requests until it is promoted")
        if data.get("id") is None:
            raise self._violation("a request needs an id")
        self._state.count("requests")
        self._queued.append(data)
        self._admit()
        return None

    def _admit(self) -> None:
        """Start queued requests while fewer than ``max_concurrency`` run."""
        loop = self._loop
        assert loop is not None
        # Not while another main's write received before is still unapplied: a request
        # sees every write acknowledged before it was sent (see docs/design.md).
        while (self._queued and self._running < self.max_concurrency
               and not self._writes.tails_waiting):
            data = self._queued[0]
            if self._agent.runs_async(data.get("input")):
                work = loop.create_task(self._handle_async(data))
                self._tasks.add(work)
                work.add_done_callback(self._request_done)
            else:
                try:
                    self._workers.submit(functools.partial(self._run_sync, data))
                except RuntimeError as exc:  # the task limit: no thread for it now
                    if not self._fewer_threads(data, exc):
                        return
                    continue
            self._queued.popleft()
            self._running += 1

    def _fewer_threads(self, data: dict[str, Any], exc: RuntimeError) -> bool:
        """No worker thread could start for ``data``: serve with the threads there are.

        True if it was answered with the error at once (no thread at all
        runs: nothing would ever serve it here); False if it stays queued.
        """
        if self._running == 0:
            self._queued.popleft()
            self._send_error(data["id"], exc)
            return True
        print(f"instance {self._instance_id}: no more worker threads ({exc}); serving "
              f"{self._running} requests at once instead of {self.max_concurrency}",
              file=sys.stderr)
        self.max_concurrency = self._running
        return False

    def _run_sync(self, data: dict[str, Any]) -> None:
        """On a worker thread: serve one request, then tell the loop how it went."""
        error: BaseException | None = None
        try:
            self._handle_sync(data)
        except BaseException as exc:  # noqa: BLE001 - reported to the loop, which decides
            error = exc
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._sync_done, error)

    def _sync_done(self, error: BaseException | None) -> None:
        self._running -= 1
        self._finished(error)

    def _request_done(self, work: asyncio.Future[Any]) -> None:
        self._tasks.discard(work)
        self._running -= 1
        self._finished(None if work.cancelled() else work.exception())

    def _finished(self, error: BaseException | None) -> None:
        if isinstance(error, _Exit):
            self._stop(error)
            return
        if error is not None:
            self._stop(_Exit(EXIT_RUNTIME_BUG, f"serving a request failed: {error!r}"))
            return
        self._admit()
        self._checkpoint_if_due()

    async def _handle_async(self, data: dict[str, Any]) -> None:
        """One request to an ``async def`` handler, on the loop, under its deadline."""
        request_id = data["id"]
        ctx = self._kit.context(request_id, emit=self._emitter(request_id, data))
        deadline = _deadline_s(data)
        try:
            async with asyncio.timeout(deadline) as scope:
                output = self._agent.handle(ctx, data.get("input"))
                if inspect.isawaitable(output):
                    output = await output
        except SystemExit as exc:
            raise _Exit(_exit_code(exc), "the agent's handler asked to exit") from exc
        except Exception as exc:  # noqa: BLE001 - agent code may raise anything
            self._raise_if_fatal()
            self._state.count("errors")
            if isinstance(exc, TimeoutError) and scope.expired():
                exc = TimeoutError(f"the handler ran past the request's deadline ({deadline:g} s)")
            self._send_error(request_id, exc)
            return
        self._answer(request_id, output)

    def _handle_sync(self, data: dict[str, Any]) -> None:
        """One request to a plain handler, on a worker thread."""
        request_id = data["id"]
        me = threading.get_ident()
        self._busy[me] = time.monotonic()
        try:
            ctx = self._kit.context(request_id, emit=self._emitter(request_id, data))
            output = self._agent.handle(ctx, data.get("input"))
        except SystemExit as exc:
            raise _Exit(_exit_code(exc), "the agent's handler asked to exit") from exc
        except Exception as exc:  # noqa: BLE001 - agent code may raise anything
            self._raise_if_fatal()
            self._on_loop(self._state.count, "errors")
            self._send_error(request_id, exc)
            return
        finally:
            self._busy.pop(me, None)
        self._answer(request_id, output)

    def _answer(self, request_id: Any, output: Any) -> None:
        self._raise_if_fatal()
        try:
            self._send(MessageType.RESPONSE, id=request_id, output=output)
        except (InvalidArgument, FrameTooLarge) as exc:
            self._on_loop(self._state.count, "errors")
            self._send_error(request_id, exc)

    def _emitter(self, request_id: Any, data: dict[str, Any]) -> Callable[[Any], None]:
        """``ctx.emit`` for one request: a ``stream`` frame per event when asked for."""
        streaming = data.get("stream") is True

        def emit(event: Any) -> None:
            self._raise_if_fatal()
            if not streaming:
                # Checked anyway, so an event that could not be streamed fails
                # the same way whether or not this caller listens.
                ensure_packable(event, "event")
                return
            self._send(MessageType.STREAM, id=request_id, event=event)
            self._progress()

        return emit

    def _send_error(self, request_id: Any, exc: BaseException) -> None:
        # Clearing the frames first frees the handler's locals (a memory
        # bomb's chunks) before we allocate the traceback text.
        traceback.clear_frames(exc.__traceback__)
        text = "".join(traceback.format_exception(exc))[-MAX_TRACEBACK_CHARS:]
        self._send(
            MessageType.ERROR,
            id=request_id,
            kind=type(exc).__name__,
            message=_describe(exc)[:MAX_MESSAGE_CHARS],
            traceback=text,
        )

    # -- feedback -------------------------------------------------------

    def _on_feedback(self, data: dict[str, Any]) -> object:
        if self.role == STANDBY:
            raise self._violation("a standby takes no feedback until it is promoted")
        if data.get("id") is None:
            raise self._violation("a feedback frame needs an id")
        self._state.count("feedback")
        assert self._loop is not None
        work = self._loop.run_in_executor(self._pool, self._feedback, data)
        self._tasks.add(work)
        work.add_done_callback(self._feedback_done)
        return None

    def _feedback_done(self, work: asyncio.Future[Any]) -> None:
        self._tasks.discard(work)
        error = None if work.cancelled() else work.exception()
        if error is not None:
            self._stop(error if isinstance(error, _Exit) else _Exit(
                EXIT_RUNTIME_BUG, f"delivering feedback failed: {error!r}"))

    def _feedback(self, data: dict[str, Any]) -> None:
        """The agent's feedback hooks, on a worker thread (their writes journal as a request's)."""
        feedback_id = data["id"]
        feedback = {field: data.get(field) for field in FEEDBACK_FIELDS}
        try:
            # Runs every @agent.on_feedback hook; one report per hook, {"hook",
            # "ok"} or {"hook", "ok": False, "error"}: a hook's error is reported,
            # not raised. It raises only for feedback it cannot take.
            reports = self._agent.feedback(self._kit.context(feedback_id), feedback)
        except SystemExit as exc:
            raise _Exit(_exit_code(exc), "a feedback hook asked to exit") from exc
        except Exception as exc:  # noqa: BLE001 - agent code may raise anything
            self._raise_if_fatal()
            self._send_error(feedback_id, exc)
            return
        self._answer(feedback_id, reports)

    # -- memory writes --------------------------------------------------

    def _journal(self, operation: str, data: dict[str, Any]) -> object:
        """The durable write of agent code on a worker thread: durable and applied on return."""
        self._raise_if_fatal()
        if threading.get_ident() == self._loop_thread:
            raise InvalidArgument(
                f"an async def handler writes with the awaitable forms ({operation}: "
                "await ctx.memory.aset(...), aremember, ..., or ctx.tools.acall / "
                "ctx.llm.achat / ctx.workflows.arun): a blocking write would stop its event loop")
        assert self._loop is not None
        self._progress()
        write = self._writes.submit(operation, data, None)
        assert write.released is not None  # a worker thread's write has its event
        while not write.released.wait(self._config.heartbeat_interval / 2):
            self._progress()
            self._raise_if_fatal()
        self._raise_if_fatal()
        if write.applied:  # a store without a lock: the loop applied it in WAL order
            self._progress()
            if write.error is not None:
                raise write.error
            return APPLIED
        try:
            self._apply_live(operation, data)
        finally:
            # The baton goes back to the loop: the next write may be applied now.
            self._loop.call_soon_threadsafe(self._baton_back, write)
        self._progress()
        return APPLIED

    def _baton_back(self, write: PendingWrite) -> None:
        """On the loop: release what waited for ``write`` (other mains' tails among it)."""
        try:
            self._writes.returned(write)
        except ProtocolError as exc:  # a callback's error would only be logged: end here
            self._stop(self._violation(str(exc)))

    async def _ajournal(self, operation: str, data: dict[str, Any]) -> object:
        """The durable write of ``await ctx.memory.aset(...)``: durable and applied on return."""
        self._raise_if_fatal()
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._writes.submit(operation, data, future)
        await future
        return APPLIED

    def _send_entry(self, entry_id: int, operation: str, data: dict[str, Any]) -> None:
        self._send(MessageType.WAL_ENTRY, id=entry_id, operation=operation, data=data)

    def _apply_live(self, operation: str, data: dict[str, Any]) -> None:
        if self._state.owns(operation):
            self._state.apply(operation, data)

    def _on_released(self, sequence: int) -> None:
        self._state.count("writes")
        self._writes_since_checkpoint += 1
        self._flush_checkpoints()

    def _on_ack(self, data: dict[str, Any]) -> object:
        try:
            self._writes.acked(data.get("id"), data.get("sequence"))
        except ProtocolError as exc:
            raise self._violation(str(exc)) from exc
        return None

    def _on_tail_entry(self, data: dict[str, Any]) -> object:
        """Another main's write (a standby: every main's), applied in WAL order."""
        if "id" in data:
            raise self._violation("a WAL tail entry carries no id (that is a write of ours)")
        sequence, operation = data.get("sequence"), data.get("operation")
        if isinstance(sequence, bool) or not isinstance(sequence, int) or not isinstance(
                operation, str):
            raise self._violation(
                f"a WAL entry needs an int sequence and a str operation: {data!r}")
        try:
            self._writes.tailed(sequence, operation, data.get("data") or {})
        except (ProtocolError, InvalidArgument) as exc:
            raise self._violation(str(exc)) from exc
        return None

    def _apply_tail(self, operation: str, data: dict[str, Any]) -> None:
        self._apply_live(operation, data)
        if self.role != STANDBY:  # a main's memory moved on: it counts toward its checkpoint
            self._writes_since_checkpoint += 1
        if self._queued and self._loop is not None:
            self._loop.call_soon(self._admit)  # requests wait for tails received before them

    def _on_promote(self, data: dict[str, Any]) -> object:
        role = data.get("role", "main")
        if not isinstance(role, str) or role == STANDBY:
            raise self._violation(f"promote needs a serving role, got {role!r}")
        self.role = role
        # A main of a pool other than the primary sends no checkpoints of its own
        # accord: the primary's cover the one memory (it still answers a request for one).
        self._checkpointing = data.get("checkpoints", True) is not False
        return None

    # -- replies by id (evolution intents; any request/response pair) -----

    def await_reply(self, reply_id: Any, send: Callable[[], None],
                    timeout: float) -> dict[str, Any] | None:
        """From a worker thread: ``send()`` a frame, then wait for the reply with its id.

        The loop hands the reply's data over (:meth:`deliver_reply`); None
        if none came within ``timeout`` seconds. Waiting is progress.
        """
        self._raise_if_fatal()
        if threading.get_ident() == self._loop_thread:
            raise InvalidArgument("an async def handler awaits the awaitable form "
                                  "(await ctx.aevolve(...)): waiting here would stop its loop")
        reply: concurrent.futures.Future[dict[str, Any]] = concurrent.futures.Future()
        self._replies[reply_id] = reply
        try:
            send()
            deadline = time.monotonic() + timeout
            while (left := deadline - time.monotonic()) > 0:
                try:
                    return reply.result(min(left, self._config.heartbeat_interval / 2))
                except concurrent.futures.TimeoutError:
                    self._progress()
                    self._raise_if_fatal()
            return None
        finally:
            self._replies.pop(reply_id, None)

    def deliver_reply(self, reply_id: Any, data: dict[str, Any]) -> bool:
        """On the loop: hand ``data`` to whoever awaits ``reply_id``; False if nobody does."""
        reply = self._replies.pop(reply_id, None)
        if reply is None or reply.done():
            return False
        reply.set_result(data)
        return True

    # -- evolution ------------------------------------------------------

    def _evolve(self, hypothesis: str, source: str | None = None, operator: str | None = None,
                params: dict[str, Any] | None = None,
                files: dict[str, str] | None = None) -> dict[str, Any]:
        """``ctx.evolve``: send an evolution_intent and return the supervisor's answer."""
        intent_id = f"intent-{next(self._intent_ids)}"
        candidate = {key: value for key, value in (("source", source), ("files", files),
                                                   ("operator", operator), ("params", params))
                     if value is not None}
        answer = self.await_reply(
            intent_id, lambda: self._send(MessageType.EVOLUTION_INTENT, id=intent_id,
                                          hypothesis=str(hypothesis), **candidate),
            EVOLVE_ANSWER_TIMEOUT)
        if answer is None:
            return {"experiment_id": None, "status": "unanswered",
                    "reason": f"the supervisor did not answer within {EVOLVE_ANSWER_TIMEOUT:g} s"}
        return {k: answer.get(k) for k in ("experiment_id", "status", "reason")}

    def _on_evolution_result(self, data: dict[str, Any]) -> object:
        if "id" in data and self.deliver_reply(data.get("id"), data):
            return None
        self.evolution_results.append(
            {k: data.get(k) for k in ("experiment_id", "status", "reason")})
        return None

    # -- checkpoints ----------------------------------------------------

    def _on_checkpoint_request(self, data: dict[str, Any]) -> object:
        self._checkpoints_wanted.append(data.get("id"))
        self._flush_checkpoints()
        return None

    def _on_checkpoint_ack(self, data: dict[str, Any]) -> object:
        self.last_checkpoint_id = data.get("checkpoint_id")
        return None

    def _flush_checkpoints(self) -> None:
        # Never while a thread applies a released write: the state would not be
        # exactly the writes through last_sequence.
        while self._checkpoints_wanted and not self._writes.baton_out:
            self._send_checkpoint(self._checkpoints_wanted.popleft())

    def _checkpoint_if_due(self) -> None:
        every = self._config.checkpoint_every
        if (every and self._checkpointing and self._writes_since_checkpoint >= every
                and not self._writes.baton_out):
            self._send_checkpoint(f"{self._instance_id}-auto-{next(self._checkpoint_ids)}")

    def _send_checkpoint(self, checkpoint_id: Any) -> None:
        self._writes_since_checkpoint = 0
        try:
            self._send(
                MessageType.CHECKPOINT,
                id=checkpoint_id,
                state=self._state.payload(),
                last_sequence=self.last_sequence,
            )
        except (InvalidArgument, FrameTooLarge) as exc:
            self._send_error(checkpoint_id, exc)

    # -- the socket -----------------------------------------------------

    def _receive(self) -> Message | None:
        """Before the loop runs: wait for a frame (no beats before the restore)."""
        try:
            return self._channel.receive(_IDLE_WAIT)
        except ConnectionClosed as exc:
            raise self._fail(EXIT_CHANNEL_LOST, f"supervisor socket closed: {exc}") from exc
        except ProtocolError as exc:
            raise self._violation(str(exc)) from exc

    def _send(self, message_type: MessageType, **data: Any) -> None:
        """Send one frame, from the loop or any worker thread."""
        try:
            self._outbox.send(Message(message_type, data))
        except ConnectionClosed as exc:
            raise self._fail(EXIT_CHANNEL_LOST, f"supervisor socket broke: {exc}") from exc

    def _on_broken_socket(self, exc: ConnectionClosed) -> None:
        """Frames the loop queued could not be sent: the supervisor is gone."""
        self._fail(EXIT_CHANNEL_LOST, f"supervisor socket broke: {exc}")

    def _on_loop_thread(self) -> bool:
        return threading.get_ident() == self._loop_thread

    def _on_llm_frame(self, kind: MessageType) -> Callable[[dict[str, Any]], object]:
        # An answer for a call nobody waits for any more (its caller raised) is dropped.
        return lambda data: self.llm_link.dispatch(Message(kind, data))

    def _on_loop(self, function: Callable[..., Any], *args: Any) -> None:
        """Run ``function(*args)`` on the loop (state the loop owns, from a worker thread)."""
        if self._loop is not None and threading.get_ident() != self._loop_thread:
            self._loop.call_soon_threadsafe(function, *args)
        else:
            function(*args)

    # -- liveness -------------------------------------------------------

    def _waiting(self) -> None:
        """A worker thread waits on the supervisor (an LLM call): progress, unless we are dying."""
        self._progress()
        self._raise_if_fatal()

    def _progress(self) -> None:
        """A worker thread came back to the runtime: it is not stuck."""
        me = threading.get_ident()
        if me in self._busy:
            self._busy[me] = time.monotonic()

    def _stalled(self) -> bool:
        limit = time.monotonic() - STALL_BEATS * self._config.heartbeat_interval
        return any(since < limit for since in list(self._busy.values()))

    def _beat_tick(self) -> None:
        assert self._loop is not None
        if self._stopped is not None and self._stopped.done():
            return
        if not self._stalled():
            try:
                self._beat()
            except _Exit as exit_:
                self._stop(exit_)
                return
        self._loop.call_later(self._config.heartbeat_interval, self._beat_tick)

    def _beat(self) -> None:
        self._send(
            MessageType.HEARTBEAT,
            beat=next(self._beats),
            rss_bytes=_rss_bytes(),
            last_sequence=self.last_sequence,
        )

    # -- failure --------------------------------------------------------

    def _violation(self, reason: str) -> _Exit:
        return self._fail(EXIT_PROTOCOL, f"protocol violation by the supervisor: {reason}")

    def _fail(self, code: int, reason: str) -> _Exit:
        # Remembered, so agent code that swallows the exception with a bare
        # except still cannot keep a broken instance serving.
        self._fatal = self._fatal or _Exit(code, reason)
        if self._loop is not None:
            self._on_loop(self._stop, self._fatal)
        return self._fatal

    def _raise_if_fatal(self) -> None:
        if self._fatal is not None:
            raise self._fatal


def _deadline_s(data: Mapping[str, Any]) -> float | None:
    deadline_ms = data.get("deadline_ms")
    if isinstance(deadline_ms, bool) or not isinstance(deadline_ms, (int, float)):
        return None
    return max(deadline_ms, 0) / 1000


def _exit_code(exc: SystemExit) -> int:
    code = exc.code
    return code if isinstance(code, int) else (0 if code is None else 1)


def _describe(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:  # noqa: BLE001 - a hostile __str__ must not take us down
        return f"<{type(exc).__name__} with an unprintable message>"


def _rss_bytes() -> int:
    with open("/proc/self/statm", "rb") as statm:
        return int(statm.read().split()[1]) * _PAGE_SIZE


def run_instance(
    sock_fd: int,
    agent: Agent,
    *,
    params: dict[str, Any] | None = None,
    version: str,
    role: str,
    instance_id: str,
    config: InstanceConfig,
) -> int:
    """Serve on the socket at ``sock_fd`` until told to stop; return the exit code."""
    # A segfault in agent code (or a C extension) prints its Python stack.
    faulthandler.enable()
    sock = socket.socket(fileno=sock_fd)
    channel = Channel(sock, config.max_frame_size)
    instance = Instance(
        channel, agent, version=version, role=role, instance_id=instance_id, config=config,
        params=params,
    )
    try:
        return instance.run()
    except SystemExit as exc:  # agent code asked the process to exit
        return _exit_code(exc)
