"""The instance: one forked process serving one agent over its socket.

::

    supervisor                                      instance (single-threaded)
        ◄── hello {pid, version, role, instance_id}
        ──► restore {checkpoint, entries, last_sequence}    sealed checkpoint copy (its fd
                                                            comes with the frame) + WAL replay
        ◄── heartbeat {beat, rss_bytes, last_sequence}      the first one means "restored",
                                                            then one every interval
        ──► request {id, input, deadline_ms, stream} ─────► handler(ctx, input)
        ◄── wal_entry {id, operation, data}  ◄───────────── ctx.memory.set / delete
        ──► wal_ack {id, sequence} ────────────────────────► applied; back to agent code
        ◄── stream {id, event}               ◄───────────── ctx.emit(event), if stream
        ◄── response {id, output} | error {id, kind, message, traceback}
        ──► feedback {id, request_id, score, comment, version}
                                            ───────────────► agent.feedback(ctx, feedback):
                                                              the on_feedback hooks, whose
                                                              writes journal as above
        ◄── response {id, output: [report per hook]} | error {id, ...}
        ──► checkpoint {id}     ◄── checkpoint {id, state, last_sequence}
        ◄── checkpoint {id, state, last_sequence}           every N acknowledged writes
        ──► wal_entry {sequence, operation, data}           standby: tail the WAL
        ──► promote {role}                                  standby becomes a server
        ◄── evolution_intent {id, hypothesis, source|files|operator, params}
                                                            ctx.evolve(...): waits for
        ──► evolution_result {id, experiment_id, status, reason}   the answer with its id;
        ──► evolution_result {experiment_id, status, reason}       the outcome comes later
        ◄── llm_call {id, messages, tools, stream, options} ctx.llm: the supervisor calls
        ──► llm_token {id, text} ... llm_result {id, ...}   the model (runtime/llm_link.py)
        ──► shutdown                                        exit 0

The fields of each message are tabled in docs/design.md ("Wire protocol").

Heartbeats are sent only where the instance waits on its socket (between
requests, and while a memory write waits for its ack) and when a handler
emits a stream event (emitting is progress: an LLM streaming tokens for
longer than the heartbeat timeout is not hung): a handler that spins or
deadlocks stops them, which is how the supervisor tells a hang.
Frames that arrive while a write waits for its ack are queued, not lost.

A handler's exception becomes an ``error`` frame and the instance goes on;
``SystemExit`` from agent code ends the process with its code. Anything
the supervisor does wrong ends it with a code of its own (sysexits.h), so
the zygote's ``exited`` report says what happened::

    0   shutdown                    65  the checkpoint could not be read
    70  a bug in this runtime       74  the supervisor's socket closed or broke
    76  the supervisor broke the protocol
"""

from __future__ import annotations

import faulthandler
import itertools
import os
import socket
import sys
import time
import traceback
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Final

from project_o.agent.dsl import Agent
from project_o.agent.kit import AgentKit
from project_o.agent.toolbox import on_owner_thread
from project_o.errors import (
    ConnectionClosed,
    FrameTooLarge,
    InvalidArgument,
    ProtocolError,
    VaultError,
)
from project_o.llm.client import TokenCallback
from project_o.llm.config import LLMConfig
from project_o.llm.remote import RemoteClient
from project_o.runtime.channel import Channel
from project_o.runtime.config import InstanceConfig
from project_o.runtime.llm_link import LLMLink
from project_o.vault.checkpoint import read_checkpoint
from project_o.wire import Message, MessageType, ensure_packable

__all__ = [
    "EXIT_CHANNEL_LOST",
    "EXIT_OK",
    "EXIT_PROTOCOL",
    "EXIT_RESTORE_FAILED",
    "EXIT_RUNTIME_BUG",
    "RESTORE_ERROR_ID",
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
        self._kit = AgentKit(agent, self._journal, params=params,
                             stub_side_effects=config.stub_side_effects)
        self._kit.idle = self._beat_if_due  # slow tools keep beating
        self._kit.evolve = self._evolve
        self._inbox: deque[Message] = deque()
        #: ctx.llm's calls: made by the supervisor, the key never here
        self.llm_link = LLMLink(lambda kind, data: self._send(kind, **data), self._receive,
                                self._inbox.append)
        if config.llm is not None:
            self._kit.use_llm(LLMConfig(**config.llm), client=RemoteClient(_OwnerThread(
                self.llm_link)))
        self._intent_ids = itertools.count(1)
        #: outcomes of experiments this agent asked for (``evolution_result`` frames)
        self.evolution_results: deque[dict[str, Any]] = deque(maxlen=EVOLUTION_RESULTS_KEPT)
        self._state = self._kit.state
        self.last_sequence = 0
        self._fatal: _Exit | None = None
        self._beats = itertools.count(1)
        # No beats before the restore: the first heartbeat tells the
        # supervisor that the restore is done.
        self._next_beat = float("inf")
        self._entry_ids = itertools.count(1)
        self._checkpoint_ids = itertools.count(1)
        self._writes_since_checkpoint = 0
        self.last_checkpoint_id: Any = None

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
            )
            self._restore(self._await_restore())
            self._beat()  # the supervisor's signal that the restore is done
            self._serve()
            return EXIT_OK
        except _Exit as exit_:
            if exit_.code != EXIT_OK:
                print(f"instance {self._instance_id}: {exit_}", file=sys.stderr)
            return exit_.code

    def _serve(self) -> None:
        handlers = self._dispatch_table()
        while True:
            message = self._next_message()
            if message is None:
                continue
            handler = handlers.get(message.type)
            if handler is None:
                raise self._violation(
                    f"the supervisor may not send {message.type!r} "
                    f"to an instance in role {self.role!r}"
                )
            if handler(message.data) is _STOP:
                return
            self._checkpoint_if_due()

    def _dispatch_table(self) -> dict[str, Callable[[dict[str, Any]], object]]:
        return {
            MessageType.REQUEST: self._on_request,
            MessageType.FEEDBACK: self._on_feedback,
            MessageType.CHECKPOINT: self._on_checkpoint_request,
            MessageType.CHECKPOINT_ACK: self._on_checkpoint_ack,
            MessageType.WAL_ENTRY: self._on_tail_entry,
            MessageType.PROMOTE: self._on_promote,
            MessageType.EVOLUTION_RESULT: self._on_evolution_result,
            # Answers to an LLM call its caller gave up on (its token callback raised).
            MessageType.LLM_TOKEN: lambda data: None,
            MessageType.LLM_RESULT: lambda data: None,
            MessageType.SHUTDOWN: lambda data: _STOP,
        }

    # -- restore --------------------------------------------------------

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
        request_id = data.get("id")
        if request_id is None:
            raise self._violation("a request needs an id")
        self._state.count("requests")
        emit = self._emitter(request_id, streaming=data.get("stream") is True)
        ctx = self._kit.context(request_id, emit=emit)
        try:
            output = self._agent.handle(ctx, data.get("input"))
        except Exception as exc:  # noqa: BLE001 - agent code may raise anything
            self._raise_if_fatal()
            self._state.count("errors")
            self._send_error(request_id, exc)
            return None
        self._raise_if_fatal()
        try:
            self._send(MessageType.RESPONSE, id=request_id, output=output)
        except (InvalidArgument, FrameTooLarge) as exc:
            self._state.count("errors")
            self._send_error(request_id, exc)
        return None

    def _emitter(self, request_id: Any, *, streaming: bool) -> Callable[[Any], None]:
        """``ctx.emit`` for one request: a ``stream`` frame per event when asked for."""

        def emit(event: Any) -> None:
            self._raise_if_fatal()
            if not streaming:
                # Checked anyway, so an event that could not be streamed fails
                # the same way whether or not this caller listens.
                ensure_packable(event, "event")
                return
            self._send(MessageType.STREAM, id=request_id, event=event)
            self._beat_if_due()

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
        feedback_id = data.get("id")
        if feedback_id is None:
            raise self._violation("a feedback frame needs an id")
        feedback = {field: data.get(field) for field in FEEDBACK_FIELDS}
        self._state.count("feedback")
        try:
            # Runs every @agent.on_feedback hook; one report per hook, {"hook",
            # "ok"} or {"hook", "ok": False, "error"}: a hook's error is reported,
            # not raised. It raises only for feedback it cannot take.
            reports = self._agent.feedback(self._kit.context(feedback_id), feedback)
        except Exception as exc:  # noqa: BLE001 - agent code may raise anything
            self._raise_if_fatal()
            self._send_error(feedback_id, exc)
            return None
        self._raise_if_fatal()
        try:
            self._send(MessageType.RESPONSE, id=feedback_id, output=reports)
        except (InvalidArgument, FrameTooLarge) as exc:
            self._send_error(feedback_id, exc)
        return None

    # -- memory writes --------------------------------------------------

    def _journal(self, operation: str, data: dict[str, Any]) -> None:
        self._raise_if_fatal()
        entry_id = next(self._entry_ids)
        self._send(MessageType.WAL_ENTRY, id=entry_id, operation=operation, data=data)
        self.last_sequence = self._await_ack(entry_id)
        self._state.count("writes")
        self._writes_since_checkpoint += 1

    def _await_ack(self, entry_id: int) -> int:
        while True:
            message = self._receive()
            if message is None:
                continue
            if message.type != MessageType.WAL_ACK:
                self._inbox.append(message)  # served after the handler returns
                continue
            acked, sequence = message.data.get("id"), message.data.get("sequence")
            if acked != entry_id:
                raise self._violation(f"expected wal_ack for entry {entry_id}, got {acked!r}")
            if (
                isinstance(sequence, bool)
                or not isinstance(sequence, int)
                or (sequence <= self.last_sequence)
            ):
                raise self._violation(
                    f"wal_ack sequence must be an int above {self.last_sequence}, got {sequence!r}"
                )
            return sequence

    def _on_tail_entry(self, data: dict[str, Any]) -> object:
        if self.role != STANDBY or "id" in data:
            raise self._violation(f"only a standby takes WAL tail entries (role {self.role!r})")
        self._apply_entry(data)
        return None

    def _on_promote(self, data: dict[str, Any]) -> object:
        role = data.get("role", "main")
        if not isinstance(role, str) or role == STANDBY:
            raise self._violation(f"promote needs a serving role, got {role!r}")
        self.role = role
        return None

    # -- evolution ------------------------------------------------------

    def _evolve(self, hypothesis: str, source: str | None = None, operator: str | None = None,
                params: dict[str, Any] | None = None,
                files: dict[str, str] | None = None) -> dict[str, Any]:
        """``ctx.evolve``: send an evolution_intent and return the supervisor's answer."""
        self._raise_if_fatal()
        intent_id = f"intent-{next(self._intent_ids)}"
        candidate = {key: value for key, value in (("source", source), ("files", files),
                                                   ("operator", operator), ("params", params))
                     if value is not None}
        self._send(MessageType.EVOLUTION_INTENT, id=intent_id, hypothesis=str(hypothesis),
                   **candidate)
        return self._await_evolution_answer(intent_id)

    def _await_evolution_answer(self, intent_id: str) -> dict[str, Any]:
        deadline = time.monotonic() + EVOLVE_ANSWER_TIMEOUT
        while time.monotonic() < deadline:
            message = self._receive()
            if message is None:
                continue
            if message.type == MessageType.EVOLUTION_RESULT and message.data.get("id") == intent_id:
                return {k: message.data.get(k) for k in ("experiment_id", "status", "reason")}
            self._inbox.append(message)  # served after the handler returns
        return {"experiment_id": None, "status": "unanswered",
                "reason": f"the supervisor did not answer within {EVOLVE_ANSWER_TIMEOUT:g} s"}

    def _on_evolution_result(self, data: dict[str, Any]) -> object:
        self.evolution_results.append(
            {k: data.get(k) for k in ("experiment_id", "status", "reason")})
        return None

    # -- checkpoints ----------------------------------------------------

    def _on_checkpoint_request(self, data: dict[str, Any]) -> object:
        self._send_checkpoint(data.get("id"))
        return None

    def _on_checkpoint_ack(self, data: dict[str, Any]) -> object:
        self.last_checkpoint_id = data.get("checkpoint_id")
        return None

    def _checkpoint_if_due(self) -> None:
        every = self._config.checkpoint_every
        if every and self._writes_since_checkpoint >= every:
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

    def _next_message(self) -> Message | None:
        if self._inbox:
            self._beat_if_due()
            return self._inbox.popleft()
        return self._receive()

    def _receive(self) -> Message | None:
        """Wait for a frame until the next beat is due; beat when it is."""
        self._beat_if_due()
        timeout = min(self._next_beat - time.monotonic(), _IDLE_WAIT)
        try:
            message = self._channel.receive(timeout)
        except ConnectionClosed as exc:
            raise self._fail(EXIT_CHANNEL_LOST, f"supervisor socket closed: {exc}") from exc
        except ProtocolError as exc:
            raise self._violation(str(exc)) from exc
        self._beat_if_due()
        return message

    def _send(self, message_type: MessageType, **data: Any) -> None:
        try:
            self._channel.send(Message(message_type, data))
        except ConnectionClosed as exc:
            raise self._fail(EXIT_CHANNEL_LOST, f"supervisor socket broke: {exc}") from exc

    def _beat_if_due(self) -> None:
        if time.monotonic() >= self._next_beat:
            self._beat()

    def _beat(self) -> None:
        self._next_beat = time.monotonic() + self._config.heartbeat_interval
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
        return self._fatal

    def _raise_if_fatal(self) -> None:
        if self._fatal is not None:
            raise self._fatal


_STOP: Final = object()


class _OwnerThread:
    """The LLM link as ctx.llm's transport, safe to call from a tool's worker thread.

    The socket has one user: a call made in a tool's worker is forwarded to
    the thread waiting for that tool, as the tool's memory writes are.
    """

    def __init__(self, link: LLMLink) -> None:
        self._call = on_owner_thread(link.call, "call the LLM")
        self.call_async = link.call_async

    def call(self, request: dict[str, Any], on_token: TokenCallback | None) -> dict[str, Any]:
        return self._call(request, on_token)


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
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
