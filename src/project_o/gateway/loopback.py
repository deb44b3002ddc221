"""Only loopback names: the Host and Origin allow-list (DNS rebinding).

The gateway listens on 127.0.0.1, but a web page on another site can still
reach it through the browser: it makes its own hostname resolve to
127.0.0.1 (DNS rebinding) and then talks to the gateway as a same-origin
page would. Such a request carries the attacker's name in ``Host``, and a
cross-site request carries the attacker's page in ``Origin``; both are
refused before any route runs::

    request ──▶ Host: 127.0.0.1 | localhost | [::1] (any port)?  no ──▶ 403 ForbiddenHost
            ──▶ Origin absent, or http(s)://one of those?        no ──▶ 403 ForbiddenOrigin
            ──▶ the application

A WebSocket handshake that fails either check is closed before it is
accepted (the client sees HTTP 403). A request without ``Host`` (HTTP/1.0,
a raw socket) is no browser's and passes; the token still guards it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from project_o.gateway.problems import error_body

__all__ = ["LOOPBACK_NAMES", "LoopbackOnlyMiddleware"]

#: the names a client on this machine uses for the gateway's 127.0.0.1 address
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})


class LoopbackOnlyMiddleware:
    """ASGI middleware: refuse requests whose Host or Origin is not a loopback name."""

    def __init__(self, app: ASGIApp, names: Iterable[str] = LOOPBACK_NAMES) -> None:
        self.app = app
        self.names = frozenset(name.lower() for name in names)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(Headers(scope=scope))
        if refusal is None:
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
        else:
            await _send_403(send, *refusal)

    def _refusal(self, headers: Headers) -> tuple[str, str] | None:
        host = headers.get("host")
        if host is not None and _hostname(f"//{host}") not in self.names:
            return "ForbiddenHost", (
                f"Host {host[:100]!r} is not a name of this machine's loopback address; the "
                "gateway answers only to 127.0.0.1, localhost or [::1] (DNS rebinding guard)")
        origin = headers.get("origin")
        if origin is not None and not self._is_loopback_origin(origin):
            return "ForbiddenOrigin", (
                f"Origin {origin[:100]!r} is another site; the gateway takes requests only "
                "from pages it serves itself or from clients that send no Origin")
        return None

    def _is_loopback_origin(self, origin: str) -> bool:
        parts = urlsplit(origin)
        return parts.scheme in ("http", "https") and _hostname(origin) in self.names


def _hostname(url: str) -> str | None:
    try:
        return urlsplit(url).hostname  # lower-cased, brackets and port removed
    except ValueError:  # e.g. an unclosed "[" in an IPv6 literal
        return None


async def _send_403(send: Send, error_type: str, message: str) -> None:
    body = json.dumps(error_body(error_type, message)).encode()
    await send({
        "type": "http.response.start",
        "status": 403,
        "headers": [(b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode())],
    })
    await send({"type": "http.response.body", "body": body})
