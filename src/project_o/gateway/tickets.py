"""One-time tickets: a short-lived stand-in for the API token where only a URL can carry it.

A browser cannot set headers on a WebSocket or on the link it opens, and a
token in a URL ends up in logs, history and scrollback. So the holder of
the token trades it, over a header, for a ticket bound to one path::

    client ── POST /v1/tickets (Bearer token) ──────▶ TicketBook.issue("/v1/stream", 30 s)
    client ── WS /v1/stream?ticket=T ───────────────▶ TicketBook.redeem(T, "/v1/stream")
    project-o dashboard ── POST /ui/api/ticket ─────▶ TicketBook.issue("/ui/login", 60 s)
    browser ── GET /ui/login?ticket=T ──────────────▶ TicketBook.redeem(T, "/ui/login")

A ticket is good once, for the one path it was issued for, until it
expires. Presented anywhere else it is refused *and* spent, so a ticket
that leaked through one door opens none. Tickets live in the supervisor's
memory only: they cannot outlive the process that issued them.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Final, NamedTuple

__all__ = ["MAX_OPEN_TICKETS", "TICKET_ENTROPY_BYTES", "TICKET_PARAMETER", "TicketBook"]

#: the query parameter a ticket travels in
TICKET_PARAMETER: Final = "ticket"
#: 256 random bits, like the API token: a ticket cannot be guessed in its lifetime
TICKET_ENTROPY_BYTES: Final = 32
#: tickets not yet redeemed, at most; the oldest are dropped past it, so a
#: client asking in a loop cannot grow the supervisor's memory
MAX_OPEN_TICKETS: Final = 256

Clock = Callable[[], float]


class _Open(NamedTuple):
    path: str
    expires: float


class TicketBook:
    """Issues and redeems one-time tickets, each bound to a path and a lifetime.

    ``clock`` is injected (monotonic seconds) so expiry is tested without waiting.
    """

    def __init__(self, *, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._open: dict[str, _Open] = {}

    def issue(self, path: str, ttl_s: float) -> str:
        """A fresh ticket good once, at ``path``, for ``ttl_s`` seconds from now."""
        if not path.startswith("/") or not ttl_s > 0:
            raise ValueError(f"a ticket needs an absolute path and a positive lifetime, "
                             f"got {path!r} and {ttl_s!r}")
        self._drop_expired()
        while len(self._open) >= MAX_OPEN_TICKETS:
            self._open.pop(next(iter(self._open)))
        ticket = secrets.token_urlsafe(TICKET_ENTROPY_BYTES)
        self._open[ticket] = _Open(path, self._clock() + ttl_s)
        return ticket

    def redeem(self, ticket: str | None, path: str) -> bool:
        """True once for a live ticket issued for ``path``; False ever after.

        A ticket presented at another path is refused and spent all the same.
        """
        if not ticket:
            return False
        found = self._open.pop(ticket, None)
        return found is not None and found.path == path and self._clock() < found.expires

    def __len__(self) -> int:
        """How many tickets are issued and not yet redeemed (expired ones included)."""
        return len(self._open)

    def _drop_expired(self) -> None:
        now = self._clock()
        for ticket in [t for t, entry in self._open.items() if entry.expires <= now]:
            del self._open[ticket]
