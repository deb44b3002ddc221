"""Logging in to the dashboard without putting the API token in a URL.

::

    project-o dashboard ── POST /ui/api/ticket (Bearer token) ──▶ TicketBook.issue()
         prints http://127.0.0.1:PORT/ui/login?ticket=T       (one use, 60 s)
    browser ── GET /ui/login?ticket=T ──▶ TicketBook.redeem(T) ──▶ SessionSigner.issue()
         Set-Cookie: project_o_ui=...; HttpOnly; SameSite=Strict; Path=/ui ──▶ 303 /ui/

A ticket lives in the supervisor's memory only, so it cannot outlive the
process that issued it. The session cookie is signed (HMAC-SHA256 keyed
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
    "SESSION_TTL_S",
    "TICKET_TTL_S",
    "SessionSigner",
    "TicketBook",
]

COOKIE_NAME: Final = "project_o_ui"
#: a printed URL is good for one minute: long enough to click, short enough
#: that one found later in a terminal scrollback is useless
TICKET_TTL_S: Final = 60.0
#: a working day; log in again after that
SESSION_TTL_S: Final = 12 * 3600.0
#: tickets not yet redeemed, at most; the oldest are dropped past it
MAX_OPEN_TICKETS: Final = 256

Clock = Callable[[], float]


class TicketBook:
    """One-time login tickets, each valid for ``ttl_s`` seconds after it is issued."""

    def __init__(self, *, ttl_s: float = TICKET_TTL_S, clock: Clock = time.monotonic) -> None:
        self._ttl_s = ttl_s
        self._clock = clock
        self._open: dict[str, float] = {}

    def issue(self) -> str:
        """A fresh ticket (256 random bits, URL-safe)."""
        self._drop_expired()
        while len(self._open) >= MAX_OPEN_TICKETS:
            self._open.pop(next(iter(self._open)))
        ticket = secrets.token_urlsafe(32)
        self._open[ticket] = self._clock() + self._ttl_s
        return ticket

    def redeem(self, ticket: str) -> bool:
        """True once for a ticket issued here and not yet expired; False ever after."""
        expires = self._open.pop(ticket, None)
        return expires is not None and self._clock() < expires

    def _drop_expired(self) -> None:
        now = self._clock()
        for ticket in [t for t, expires in self._open.items() if expires <= now]:
            del self._open[ticket]


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
