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
        else:
            _on_loop_of(call.future, self._deliver_token, call, call.future, text)

    def _resolve(self, call: _Call, data: dict[str, Any]) -> None:
        result: dict[str, Any] = {key: data[key] for key in ("completion", "error")
                                  if key in data}
        if call.future is None:
            call.inbox.put(("result", result))
        else:
            _on_loop_of(call.future, _settle, call.future, result)

    @staticmethod
    def _deliver_token(call: _Call, future: asyncio.Future[dict[str, Any]], text: str) -> None:
        if call.on_token is None or future.done():
            return
        try:
            call.on_token(text)
        except BaseException as exc:  # noqa: BLE001 - the caller's error, raised to it
            future.set_exception(exc)


def _settle(future: asyncio.Future[dict[str, Any]], result: dict[str, Any]) -> None:
    if not future.done():
        future.set_result(result)


def _on_loop_of(future: asyncio.Future[Any], function: Callable[..., None], *args: Any) -> None:
    """Run ``function(*args)`` on the loop ``future`` belongs to.

    At once when that is the loop running here (the instance's own); else
    (agent code that runs a loop of its own on a worker thread) through
    ``call_soon_threadsafe``: a future is not thread-safe.
    """
    loop = future.get_loop()
    try:
        here = asyncio.get_running_loop()
    except RuntimeError:
        here = None
    if here is loop:
        function(*args)
    elif not loop.is_closed():
        loop.call_soon_threadsafe(function, *args)
