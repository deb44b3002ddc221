"""Logging in to the dashboard without putting the API token in a URL.

::

    project-o dashboard ── POST /ui/api/ticket (Bearer token) ──▶ tickets.issue(LOGIN_PATH)
         prints http://127.0.0.1:PORT/ui/login?ticket=T       (one use, 60 s)
    browser ── GET /ui/login?ticket=T ──▶ tickets.redeem(T, LOGIN_PATH) ──▶ SessionSigner.issue()
         Set-Cookie: project_o_ui=...; HttpOnly; SameSite=Strict; Path=/ui ──▶ 303 /ui/

The tickets are the gateway's one kind (:mod:`project_o.gateway.tickets`,
also behind ``?ticket=`` on the ``/v1/stream`` WebSocket), from the one
book the gateway keeps; a ticket lives in the supervisor's memory only, so
it cannot outlive the process that issued it. The session cookie is signed (HMAC-SHA256 keyed
by a hash of the API token) and carries its own expiry: a supervisor the
heart restarted still accepts it, and changing the token logs everyone out.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from typing import Final

__all__ = [
    "COOKIE_NAME",
    "LOGIN_PATH",
    "SESSION_TTL_S",
    "TICKET_TTL_S",
    "SessionSigner",
]

COOKIE_NAME: Final = "project_o_ui"
#: a printed URL is good for one minute: long enough to click, short enough
#: that one found later in a terminal scrollback is useless
TICKET_TTL_S: Final = 60.0
#: a working day; log in again after that
SESSION_TTL_S: Final = 12 * 3600.0
#: the one path a login ticket opens
LOGIN_PATH: Final = "/ui/login"

Clock = Callable[[], float]


class SessionSigner:
    """Signs and checks session cookies ``<id>.<expiry>.<mac>``."""

    def __init__(self, token: str, *, ttl_s: float = SESSION_TTL_S,
                 clock: Clock = time.time) -> None:
        # A key derived from the token, not the token itself: a leaked cookie
        # MAC says nothing usable about the API token.
        self._key = hashlib.sha256(b"project-o dashboard session\0" + token.encode()).digest()
        self._ttl_s = ttl_s
        self._clock = clock

    @property
    def ttl_s(self) -> float:
        """How long a session lasts, in seconds."""
        return self._ttl_s

    def issue(self) -> str:
        """A new session cookie value."""
        body = f"{secrets.token_urlsafe(16)}.{int(self._clock() + self._ttl_s)}"
        return f"{body}.{self._mac(body)}"

    def valid(self, cookie: str | None) -> bool:
        """True for a cookie this signer issued that has not expired."""
        if not cookie or cookie.count(".") != 2:
            return False
        body, _, mac = cookie.rpartition(".")
        if not hmac.compare_digest(mac, self._mac(body)):
            return False
        expiry = body.rpartition(".")[2]
        return expiry.isdigit() and self._clock() < int(expiry)

    def _mac(self, body: str) -> str:
        return hmac.new(self._key, body.encode(), hashlib.sha256).hexdigest()
