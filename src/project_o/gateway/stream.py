"""WebSocket ``/v1/stream``: one socket, requests one after another, events as they come.

::

    client                                     gateway                         service
    ── upgrade /v1/stream ────────────────▶  `Authorization: Bearer <token>`, or
       (?ticket=T where headers cannot         a one-time ticket from POST /v1/tickets
        be set: browsers)                      (30 s, this path only); missing, wrong,
                                               used or expired: HTTP 401, no upgrade
    ── {"input": ..., "deadline_ms"?} ────▶  checked like POST /v1/requests
    ◀── {"type": "accepted", "request_id"}    submit(input, request_id=, on_event=) ───▶
    ◀── {"type": "event", "data": ...}  ×N ◀── on_event(e), for each ctx.emit(e)
    ◀── {"type": "output", "request_id", "output", "version", "latency_ms"}
      | {"type": "error", "status", "error": {"type", "message", ...}}
    ── the next request ...                   (messages sent meanwhile wait their turn)

    not JSON, or not a valid request ──▶ {"type": "error", "status": 400 | 422, ...};
                                         the socket stays open for the next one
    a message over the size limit    ──▶ close with 1009 (message too big)

``error`` messages carry the same ``type``/``message``/fields as the HTTP
error bodies, plus the HTTP ``status`` the same failure gets from
``POST /v1/requests``. Events the gateway cannot pass on — not JSON, or
more than :data:`MAX_BUFFERED_EVENTS` waiting for a slow client — are
dropped and counted in the output's ``dropped_events``. If the agent's
instance dies mid-request the request is re-run on its replacement, so
events already sent may come again.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import deque
from collections.abc import AsyncIterator
from typing import Any, Final

from fastapi import WebSocket
from fastapi.responses import JSONResponse
from starlette.websockets import WebSocketDisconnect

from project_o.errors import ServiceError
from project_o.gateway.auth import BearerAuth, bearer_token
from project_o.gateway.bodies import dump_json, parse_json, result_payload, validate
from project_o.gateway.models import SubmitRequest
from project_o.gateway.problems import APIError, error_body
from project_o.gateway.tickets import TICKET_PARAMETER, TicketBook
from project_o.supervisor.api import AgentService
from project_o.wire.packable import Packed

__all__ = ["MAX_BUFFERED_EVENTS", "STREAM_PATH", "STREAM_TICKET_TTL_S", "StreamSession"]

STREAM_PATH: Final = "/v1/stream"
#: a stream ticket is fetched just before the upgrade: 30 s covers a slow
#: client, and a URL found later in a log is spent or expired
STREAM_TICKET_TTL_S: Final = 30.0
#: the query parameter the token once travelled in; refused with a pointer to tickets
_RETIRED_TOKEN_PARAMETER: Final = "token"
_CHALLENGE: Final = {"WWW-Authenticate": 'Bearer realm="project-o", error="invalid_token"'}
#: events held for a client that reads slower than the agent emits; an LLM
#: streams a few hundred tokens a second, so this is tens of seconds of lag
MAX_BUFFERED_EVENTS: Final = 10_000
# RFC 6455 §7.4.1 close codes.
_POLICY_VIOLATION: Final = 1008
_MESSAGE_TOO_BIG: Final = 1009
# A close frame's reason is at most 123 bytes (RFC 6455 §5.5).
_MAX_CLOSE_REASON: Final = 123

logger = logging.getLogger(__name__)


class _Gone(Exception):
    """The client went away; stop serving this socket."""


class EventQueue:
    """Events from the service's callback to the socket, bounded, in order."""

    def __init__(self, limit: int = MAX_BUFFERED_EVENTS) -> None:
        self._events: deque[Any] = deque()
        self._limit = limit
        self._wakeup = asyncio.Event()
        self._closed = False
        self.dropped = 0

    def put(self, event: Any) -> None:
        """Queue one event (the service's ``on_event``); never blocks."""
        if self._closed:
            return
        if len(self._events) >= self._limit:
            self.dropped += 1
            return
        self._events.append(event)
        self._wakeup.set()

    def close(self) -> None:
        """No more events will come; iteration ends once the queue is empty."""
        self._closed = True
        self._wakeup.set()

    async def __aiter__(self) -> AsyncIterator[Any]:
        while True:
            while self._events:
                yield self._events.popleft()
            if self._closed:
                return
            self._wakeup.clear()
            await self._wakeup.wait()


class StreamSession:
    """Serves one WebSocket connection until the client leaves."""

    def __init__(
        self, websocket: WebSocket, service: AgentService, *, max_message_bytes: int
    ) -> None:
        self._ws = websocket
        self._service = service
        self._max_message_bytes = max_message_bytes

    async def run(self, auth: BearerAuth, tickets: TicketBook) -> None:
        """Authenticate, accept, then answer requests until the client leaves."""
        if not await self._authenticate(auth, tickets):
            return
        await self._ws.accept()
        try:
            while True:
                raw = await self._receive()
                if raw is None:
                    return
                await self._handle(raw)
        except _Gone:
            return

    async def _authenticate(self, auth: BearerAuth, tickets: TicketBook) -> bool:
        try:
            _check_credentials(self._ws, auth, tickets)
        except APIError as exc:
            await self._deny(exc)
            return False
        return True

    async def _deny(self, exc: APIError) -> None:
        if "websocket.http.response" in self._ws.scope.get("extensions", {}):
            body = error_body(exc.error_type, exc.detail)
            await self._ws.send_denial_response(
                JSONResponse(body, status_code=exc.status_code, headers=exc.headers)
            )
        else:  # the server cannot answer the upgrade with HTTP: refuse it instead
            await self._ws.close(_POLICY_VIOLATION, exc.detail[:_MAX_CLOSE_REASON])

    async def _receive(self) -> bytes | str | None:
        """The next message, or None once the client closed; 1009 if it is too big."""
        message = await self._ws.receive()
        if message["type"] == "websocket.disconnect":
            return None
        text, data = message.get("text"), message.get("bytes")
        raw: bytes | str = text if text is not None else (data or b"")
        size = len(raw.encode("utf-8", "surrogatepass")) if isinstance(raw, str) else len(raw)
        if size > self._max_message_bytes:
            reason = f"message of {size} bytes is over the limit of {self._max_message_bytes}"
            await self._ws.close(_MESSAGE_TOO_BIG, reason[:_MAX_CLOSE_REASON])
            raise _Gone
        return raw

    async def _handle(self, raw: bytes | str) -> None:
        try:
            submission = validate(SubmitRequest, parse_json(raw, what="the message"))
        except APIError as exc:
            await self._send(_error_message(exc.status_code, exc.error_type, exc.detail, exc.extra))
            return
        await self._serve(submission)

    async def _serve(self, submission: SubmitRequest) -> None:
        request_id = uuid.uuid4().hex
        await self._send({"type": "accepted", "request_id": request_id})
        events = EventQueue()
        deadline_ms = submission.deadline_ms
        task = asyncio.ensure_future(
            self._service.submit(
                Packed.of(submission.input),  # walked once by validate(), never again
                deadline_s=None if deadline_ms is None else deadline_ms / 1000,
                request_id=request_id,
                on_event=events.put,
            )
        )
        task.add_done_callback(lambda _: events.close())
        try:
            async for event in events:
                if not await self._send_event(event):
                    events.dropped += 1
            answer = await self._answer(task, request_id, events.dropped)
        finally:
            task.cancel()  # the client left mid-request: nobody is waiting for it
        try:
            text = dump_json(answer, request_id=request_id)
        except APIError as exc:  # the agent's output is not JSON
            text = dump_json(_error_message(exc.status_code, exc.error_type, exc.detail, exc.extra))
        await self._send_text(text.decode("utf-8"))

    async def _answer(
        self, task: asyncio.Future[Any], request_id: str, dropped: int
    ) -> dict[str, Any]:
        try:
            result = await task
        except ServiceError as exc:
            return _error_message(exc.http_status, type(exc).__name__, str(exc), exc.details())
        except Exception:  # a service bug must not end the socket
            logger.exception("the service failed while streaming request %s", request_id)
            return _error_message(
                500,
                "InternalError",
                "the gateway hit an unexpected error; the server log has the details",
                {"request_id": request_id},
            )
        answer = {"type": "output", **result_payload(result)}
        if dropped:
            answer["dropped_events"] = dropped
        return answer

    async def _send_event(self, event: Any) -> bool:
        """Send one event; False (and nothing sent) if it is not JSON."""
        try:
            text = dump_json({"type": "event", "data": event})
        except APIError:
            return False
        await self._send_text(text.decode("utf-8"))
        return True

    async def _send(self, message: dict[str, Any]) -> None:
        await self._send_text(dump_json(message).decode("utf-8"))

    async def _send_text(self, text: str) -> None:
        try:
            await self._ws.send_text(text)
        except (WebSocketDisconnect, OSError, RuntimeError) as exc:
            # RuntimeError: starlette's "cannot send once closed" on some versions.
            raise _Gone from exc


def _check_credentials(websocket: WebSocket, auth: BearerAuth, tickets: TicketBook) -> None:
    """Pass a Bearer header with the token, or a live ticket for this path; else a 401."""
    header = websocket.headers.get("authorization")
    if header is not None:
        auth.check(bearer_token(header))
        return
    query = websocket.query_params
    if _RETIRED_TOKEN_PARAMETER in query:
        raise APIError(401, "Unauthorized", "the API token is not accepted in a URL (it would "
                       "end up in logs); send `Authorization: Bearer <token>`, or POST "
                       f"/v1/tickets and connect with `?{TICKET_PARAMETER}=<ticket>`",
                       headers=_CHALLENGE)
    ticket = query.get(TICKET_PARAMETER)
    if ticket is None:
        auth.check(None, how="send the header `Authorization: Bearer <token>` or, where "
                   "headers cannot be set, POST /v1/tickets and connect with "
                   f"`?{TICKET_PARAMETER}=<ticket>`")
    elif not tickets.redeem(ticket, STREAM_PATH):
        raise APIError(401, "Unauthorized", "the ticket is unknown, already used, expired or "
                       f"issued for another path; POST /v1/tickets for a fresh one (good once, "
                       f"for {STREAM_TICKET_TTL_S:g} s)", headers=_CHALLENGE)


def _error_message(
    status: int, error_type: str, message: str, extra: dict[str, Any]
) -> dict[str, Any]:
    return {"type": "error", "status": status, **error_body(error_type, message, **extra)}
