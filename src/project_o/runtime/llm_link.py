"""The instance's end of the LLM proxy: calls in flight, matched to their answers by id.

::

    ctx.llm.chat  ─► RemoteClient ─► LLMLink.call(request, on_token)        worker thread
    ctx.llm.achat ─► RemoteClient ─► LLMLink.call_async(request, on_token)  event loop
        ── llm_call {id, messages, tools, stream, options} ──► supervisor
        ◄─ llm_token {id, text} ... ─► that call's on_token, in order
        ◄─ llm_result {id, completion | error} ─► that call returns it

The instance's event loop is the only reader of the socket: it hands
every ``llm_token`` / ``llm_result`` to :meth:`LLMLink.dispatch`, which
routes it by id to the call it belongs to, so many calls from concurrent
requests may be in flight at once and each gets its own answer.

* A sync call (a plain handler on a worker thread, or a tool's thread)
  sends its frame through the instance's locked writer and waits on a
  thread-safe queue of its own; its tokens reach ``on_token`` on the
  calling thread, in order. While it waits it calls ``waiting()`` every
  ``slice_s`` seconds: the wait is progress (a minute-long completion is
  not a hung handler), and ``waiting`` raises when the instance is dying.
* An async call (``await ctx.llm.achat``) awaits a future the loop
  resolves; its tokens reach ``on_token`` on the loop.

A sync call made on the loop's own thread (``ctx.llm.chat`` in an
``async def`` handler) is refused: waiting there would stop the loop that
must deliver its answer. Answers for calls nobody waits for any more (the
caller's token callback raised) are dropped.
"""

from __future__ import annotations

import asyncio
import itertools
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from project_o.errors import InvalidArgument
from project_o.llm.client import TokenCallback
from project_o.wire import Message, MessageType

__all__ = ["LLMLink"]

Send = Callable[[MessageType, dict[str, Any]], None]


@dataclass(eq=False)
class _Call:
    """One call in flight: a sync caller's queue, or an async caller's future."""

    on_token: TokenCallback | None
    #: ("token", text) / ("result", data), for a caller on a worker thread
    inbox: queue.SimpleQueue[tuple[str, Any]] = field(default_factory=queue.SimpleQueue)
    #: the answer, for a caller on the loop
    future: asyncio.Future[dict[str, Any]] | None = None


class LLMLink:
    """Sends ``llm_call`` frames and routes their answers (see the module docstring).

    ``send`` writes one frame, from any thread; ``waiting`` is called while
    a sync call waits (it may raise to abandon the wait); ``on_loop`` says
    whether the calling thread is the event loop's.
    """

    def __init__(self, send: Send, *, waiting: Callable[[], None] = lambda: None,
                 on_loop: Callable[[], bool] = lambda: False, slice_s: float = 0.1) -> None:
        self._send = send
        self._waiting = waiting
        self._on_loop = on_loop
        self._slice = slice_s
        self._ids = itertools.count(1)
        self._ids_lock = threading.Lock()
        self._calls: dict[str, _Call] = {}

    @property
    def in_flight(self) -> int:
        """Calls sent and not yet answered (or given up)."""
        return len(self._calls)

    def call(self, request: dict[str, Any], on_token: TokenCallback | None) -> dict[str, Any]:
        """Send one call and wait (on this thread) until its ``llm_result`` arrives; its data."""
        if self._on_loop():
            raise InvalidArgument("an async def handler awaits ctx.llm.achat(...): "
                                  "ctx.llm.chat would stop the event loop its answer comes on")
        call_id, call = self._open(on_token)
        try:
            self._send(MessageType.LLM_CALL, {"id": call_id, **request})
            while True:
                try:
                    kind, value = call.inbox.get(timeout=self._slice)
                except queue.Empty:
                    self._waiting()
                    continue
                if kind == "result":
                    return value  # type: ignore[no-any-return]
                if on_token is not None:
                    on_token(value)  # its exception ends the call (the rest is dropped)
        finally:
            self._calls.pop(call_id, None)

    async def call_async(
        self, request: dict[str, Any], on_token: TokenCallback | None,
    ) -> dict[str, Any]:
        """Send one call and await its ``llm_result`` (the loop dispatches it)."""
        call_id, call = self._open(on_token)
        call.future = asyncio.get_running_loop().create_future()
        try:
            self._send(MessageType.LLM_CALL, {"id": call_id, **request})
            return await call.future
        finally:
            self._calls.pop(call_id, None)

    def dispatch(self, message: Message) -> bool:
        """On the loop: route an ``llm_token`` / ``llm_result`` to its call.

        False for any other frame; True for an answer, delivered or dropped.
        """
        if message.type not in (MessageType.LLM_TOKEN, MessageType.LLM_RESULT):
            return False
        call = self._calls.get(str(message.data.get("id")))
        if call is None:
            return True  # its caller is gone: nothing waits for it
        if message.type == MessageType.LLM_TOKEN:
            text = message.data.get("text")
            if isinstance(text, str):
                self._token(call, text)
        else:
            self._resolve(call, message.data)
        return True

    def _open(self, on_token: TokenCallback | None) -> tuple[str, _Call]:
        with self._ids_lock:  # callers on many threads
            call_id = f"llm-{next(self._ids)}"
        call = _Call(on_token)
        self._calls[call_id] = call
        return call_id, call

    def _token(self, call: _Call, text: str) -> None:
        if call.future is None:
            call.inbox.put(("token", text))
            return
        if call.on_token is None or call.future.done():
            return
        try:
            call.on_token(text)
        except BaseException as exc:  # noqa: BLE001 - the caller's error, raised to it
            call.future.set_exception(exc)

    def _resolve(self, call: _Call, data: dict[str, Any]) -> None:
        result: dict[str, Any] = {key: data[key] for key in ("completion", "error")
                                  if key in data}
        if call.future is None:
            call.inbox.put(("result", result))
        elif not call.future.done():
            call.future.set_result(result)
