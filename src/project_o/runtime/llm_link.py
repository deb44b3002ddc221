"""The instance's end of the LLM proxy: calls in flight, matched to their answers by id.

::

    ctx.llm.chat ─► RemoteClient ─► LLMLink.call(request, on_token)      sync handlers
                                    LLMLink.call_async(request, on_token) async handlers
        ── llm_call {id, messages, tools, stream, options} ──► supervisor
        ◄─ llm_token {id, text} ... ─► that call's on_token, in order
        ◄─ llm_result {id, completion | error} ─► that call returns it

Many calls may be in flight at once: each has its id, and
:meth:`LLMLink.dispatch` hands every ``llm_token`` / ``llm_result`` to
the call it belongs to, whichever reads the socket. A sync call reads the
socket itself until its answer is in (through ``receive``, which also
beats, and other frames are queued for later, as a memory write's wait
does); an async call waits on a future that the instance's reader
resolves with ``dispatch``. Answers for calls nobody waits for any more
(the caller's token callback raised) are dropped.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from project_o.errors import LLMError
from project_o.llm.client import TokenCallback
from project_o.wire import Message, MessageType

__all__ = ["LLMLink"]

Send = Callable[[MessageType, dict[str, Any]], None]
SendAsync = Callable[[MessageType, dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Message | None]
Requeue = Callable[[Message], None]


@dataclass(eq=False)
class _Call:
    on_token: TokenCallback | None
    result: dict[str, Any] | None = None
    future: asyncio.Future[dict[str, Any]] | None = None
    failed: BaseException | None = None


class LLMLink:
    """Sends ``llm_call`` frames and routes their answers (see the module docstring).

    ``send`` writes one frame; ``receive`` waits for the next one (None:
    nothing yet) and ``requeue`` keeps a frame that is not an LLM answer
    for the instance's own loop. ``send_async`` is the async form of
    ``send``, for :meth:`call_async`.
    """

    def __init__(self, send: Send, receive: Receive, requeue: Requeue,
                 send_async: SendAsync | None = None) -> None:
        self._send = send
        self._send_async = send_async
        self._receive = receive
        self._requeue = requeue
        self._ids = itertools.count(1)
        self._calls: dict[str, _Call] = {}

    def call(self, request: dict[str, Any], on_token: TokenCallback | None) -> dict[str, Any]:
        """Send one call and read the socket until its ``llm_result`` arrives; its data."""
        call_id, call = self._open(on_token)
        try:
            self._send(MessageType.LLM_CALL, {"id": call_id, **request})
            while call.result is None:
                message = self._receive()
                if message is not None and not self.dispatch(message):
                    self._requeue(message)  # served after the handler returns
                if call.failed is not None:
                    raise call.failed
            return call.result
        finally:
            self._calls.pop(call_id, None)

    async def call_async(
        self, request: dict[str, Any], on_token: TokenCallback | None,
    ) -> dict[str, Any]:
        """Send one call and await its ``llm_result`` (the instance's reader dispatches it)."""
        if self._send_async is None:
            raise LLMError("this instance serves no async handlers: use ctx.llm.chat")
        call_id, call = self._open(on_token)
        call.future = asyncio.get_running_loop().create_future()
        try:
            await self._send_async(MessageType.LLM_CALL, {"id": call_id, **request})
            return await call.future
        finally:
            self._calls.pop(call_id, None)

    def dispatch(self, message: Message) -> bool:
        """Route an ``llm_token`` / ``llm_result`` to its call; False for any other frame."""
        if message.type not in (MessageType.LLM_TOKEN, MessageType.LLM_RESULT):
            return False
        call = self._calls.get(str(message.data.get("id")))
        if call is None:
            return True  # its caller is gone: nothing waits for it
        if message.type == MessageType.LLM_TOKEN:
            self._token(call, message.data.get("text"))
        else:
            self._resolve(call, message.data)
        return True

    def _open(self, on_token: TokenCallback | None) -> tuple[str, _Call]:
        call_id = f"llm-{next(self._ids)}"
        call = _Call(on_token)
        self._calls[call_id] = call
        return call_id, call

    def _token(self, call: _Call, text: Any) -> None:
        if call.on_token is None or not isinstance(text, str) or call.failed is not None:
            return
        try:
            call.on_token(text)
        except BaseException as exc:  # noqa: BLE001 - the caller's error, raised to it
            call.failed = exc
            if call.future is not None and not call.future.done():
                call.future.set_exception(exc)

    def _resolve(self, call: _Call, data: dict[str, Any]) -> None:
        result: dict[str, Any] = {key: data[key] for key in ("completion", "error")
                                  if key in data}
        call.result = result
        if call.future is not None and not call.future.done():
            call.future.set_result(result)
