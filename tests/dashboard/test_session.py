"""One-time tickets and signed session cookies, with an injected clock."""

from __future__ import annotations

from project_o.dashboard.session import LOGIN_PATH, TICKET_TTL_S, SessionSigner
from project_o.gateway.tickets import MAX_OPEN_TICKETS, TicketBook


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_ticket_is_good_once() -> None:
    book = TicketBook(clock=Clock())
    ticket = book.issue(LOGIN_PATH, TICKET_TTL_S)
    assert book.redeem(ticket, LOGIN_PATH) is True
    assert book.redeem(ticket, LOGIN_PATH) is False


def test_a_ticket_expires_after_its_ttl() -> None:
    clock = Clock()
    book = TicketBook(clock=clock)
    late, early = book.issue(LOGIN_PATH, TICKET_TTL_S), book.issue(LOGIN_PATH, TICKET_TTL_S)
    clock.now += TICKET_TTL_S - 1
    assert book.redeem(early, LOGIN_PATH) is True
    clock.now += 2
    assert book.redeem(late, LOGIN_PATH) is False


def test_unknown_and_empty_tickets_are_refused() -> None:
    book = TicketBook(clock=Clock())
    book.issue(LOGIN_PATH, TICKET_TTL_S)
    assert book.redeem("", LOGIN_PATH) is False
    assert book.redeem(None, LOGIN_PATH) is False
    assert book.redeem("made-up", LOGIN_PATH) is False


def test_tickets_are_distinct() -> None:
    book = TicketBook(clock=Clock())
    assert len({book.issue(LOGIN_PATH, TICKET_TTL_S) for _ in range(50)}) == 50


def test_a_ticket_opens_only_its_own_path_and_is_spent_elsewhere() -> None:
    book = TicketBook(clock=Clock())
    ticket = book.issue(LOGIN_PATH, TICKET_TTL_S)
    assert book.redeem(ticket, "/v1/stream") is False
    assert book.redeem(ticket, LOGIN_PATH) is False  # shown at the wrong door: gone


def test_open_tickets_are_bounded() -> None:
    book = TicketBook(clock=Clock())
    first = book.issue(LOGIN_PATH, TICKET_TTL_S)
    for _ in range(MAX_OPEN_TICKETS):
        book.issue(LOGIN_PATH, TICKET_TTL_S)
    assert len(book) == MAX_OPEN_TICKETS
    assert book.redeem(first, LOGIN_PATH) is False  # the oldest made room


def test_a_session_cookie_is_valid_until_it_expires() -> None:
    clock = Clock()
    signer = SessionSigner("token-a", ttl_s=100, clock=clock)
    cookie = signer.issue()
    assert signer.valid(cookie)
    clock.now += 101
    assert not signer.valid(cookie)


def test_a_tampered_or_foreign_cookie_is_refused() -> None:
    clock = Clock()
    signer = SessionSigner("token-a", clock=clock)
    cookie = signer.issue()
    session, expiry, mac = cookie.split(".")
    assert not signer.valid(f"{session}.{int(expiry) + 10_000}.{mac}")  # longer life, same MAC
    assert not signer.valid(f"other.{expiry}.{mac}")
    assert not SessionSigner("token-b", clock=clock).valid(cookie)  # the token changed
    for junk in (None, "", "a.b", "a.b.c.d", "..."):
        assert not signer.valid(junk)
