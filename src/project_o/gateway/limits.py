"""The request-body size limit, enforced while the body is read.

A ``Content-Length`` header cannot be trusted (a chunked body has none,
and a client may lie), so the limit is counted on the bytes that actually
arrive, before the application sees any of them::

    client ──▶ uvicorn ──receive()──▶ BodyLimitMiddleware ──────────────▶ app
                                      │ Content-Length > limit: 413, with   (replayed body,
                                      │   nothing kept                       one message)
                                      │ count bytes as chunks arrive;
                                      │ over the limit: stop keeping them,
                                      │   drain a little (see DRAIN_BYTES), 413
                                      └ within the limit: hand the body on

The whole body is buffered (at most ``max_body_bytes``), which is what a
JSON endpoint does anyway; the application then reads it as one message.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from project_o.errors import InvalidArgument
from project_o.gateway.problems import error_body

__all__ = ["DEFAULT_MAX_BODY_BYTES", "DRAIN_BYTES", "BodyLimitMiddleware"]

# 1 MiB: far more than any request JSON we expect, small enough that a
# burst of oversized bodies cannot press the supervisor's memory.
DEFAULT_MAX_BODY_BYTES = 1 << 20
# Most clients (httpx, requests, curl) send the whole body before reading the
# answer; if we closed with their bytes unread, the kernel would reset the
# connection and they would see the reset instead of our 413. So we read and
# discard up to this much more (a short "lingering close", as nginx does),
# and only past it give up on being polite.
DRAIN_BYTES = 4 << 20


class BodyLimitMiddleware:
    """ASGI middleware: answer 413 to any HTTP request body over ``max_body_bytes``."""

    def __init__(self, app: ASGIApp, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        if max_body_bytes <= 0:
            raise InvalidArgument(
                f"max_body_bytes must be a positive number of bytes, got {max_body_bytes}"
            )
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _declared_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            await self._refuse_declared(scope, receive, send, declared)
            return
        body = await self._read_body(receive, send)
        if body is not None:
            await self.app(scope, _replay(body, receive), send)

    async def _read_body(self, receive: Receive, send: Send) -> bytes | None:
        """The whole body; None if it was refused (413 sent) or the client left."""
        body = bytearray()
        more_body = True
        while more_body:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None  # there is no one left to answer
            body += message.get("body", b"")
            more_body = message.get("more_body", False)
            if len(body) > self.max_body_bytes:
                if await _drain(receive, more_body=more_body, budget=DRAIN_BYTES):
                    await self._reject(send, f"more than {self.max_body_bytes} bytes arrived")
                return None
        return bytes(body)

    async def _refuse_declared(
        self, scope: Scope, receive: Receive, send: Send, declared: int
    ) -> None:
        # A client waiting on `Expect: 100-continue` has sent nothing and will
        # send nothing unless we read (uvicorn says "100 Continue" on the first
        # receive), so it needs no draining. A body too big to drain is not
        # worth reading: that client sees the connection reset instead.
        drain = declared - self.max_body_bytes <= DRAIN_BYTES and not _expects_continue(scope)
        if drain and not await _drain(receive, more_body=True, budget=declared):
            return  # the client left
        await self._reject(send, f"its Content-Length is {declared} bytes")

    async def _reject(self, send: Send, what: str) -> None:
        message = (
            f"request body too large: {what}, and the limit is {self.max_body_bytes} bytes; "
            "send a smaller body (the operator can raise the gateway's max_body_bytes)"
        )
        payload = json.dumps(
            error_body("PayloadTooLarge", message, limit_bytes=self.max_body_bytes),
            separators=(",", ":"),
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                    # The rest of the body may still be on its way; do not reuse this connection.
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})


async def _drain(receive: Receive, *, more_body: bool, budget: int) -> bool:
    """Discard up to ``budget`` bytes of what is still coming; False if the client left."""
    drained = 0
    while more_body and drained < budget:
        message = await receive()
        if message["type"] == "http.disconnect":
            return False
        drained += len(message.get("body", b""))
        more_body = message.get("more_body", False)
    return True


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the HTTP parser rejects these before we run
    return None


def _expects_continue(scope: Scope) -> bool:
    return any(
        name == b"expect" and value.lower() == b"100-continue" for name, value in scope["headers"]
    )


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that yields the buffered body once, then defers to the real one."""
    delivered = False

    async def replay() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: only http.disconnect can come

    return replay
