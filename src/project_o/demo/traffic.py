"""A steady stream of user questions against the supervisor, with every outcome kept.

::

    Traffic.start() ─► N threads, each: POST /v1/requests {"do": "ask", "query": q}
                        q: a known subject; with probability unseen_share (0 until
                        set) a word no fact contains
                      ─► Outcome(t, ok, version, latency_ms, error)  (thread-safe list)
    failures(since, until) / outcomes(since, until)  what users saw in a window

Closed loop (each thread waits for its answer), so the rate is what the
stack can serve; a failure is any answer that is not HTTP 200.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import httpx

__all__ = ["Outcome", "Traffic"]

#: client-side ceiling per request: a hung request must not hang the demo
REQUEST_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Outcome:
    """One request as a user saw it."""

    t: float
    ok: bool
    version: str | None
    latency_ms: float
    error: str | None


class Traffic:
    """Background users asking about ``subjects`` (and later about ``unseen`` words)."""

    def __init__(self, url: str, token: str, subjects: Sequence[str], unseen: Sequence[str],
                 *, threads: int = 2, seed: int = 11) -> None:
        self._url, self._token = url, token
        self._subjects, self._unseen = list(subjects), list(unseen)
        self._seeds = [seed + i for i in range(threads)]
        self._lock = threading.Lock()
        self._outcomes: list[Outcome] = []
        self._stop = threading.Event()
        self._running = threading.Event()
        self._running.set()
        self._threads: list[threading.Thread] = []
        #: share of questions about unseen words (the traffic mix shifts later)
        self.unseen_share = 0.0

    def start(self) -> None:
        """Start the user threads."""
        for seed in self._seeds:
            thread = threading.Thread(target=self._user, args=(random.Random(seed),),
                                      name=f"demo-user-{seed}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def pause(self) -> None:
        """Hold new questions (so a measurement sees the same quiet stack each time)."""
        self._running.clear()

    def resume(self) -> None:
        """Let the users ask again."""
        self._running.set()

    def stop(self) -> None:
        """Stop and join the user threads."""
        self._stop.set()
        self._running.set()
        for thread in self._threads:
            thread.join(REQUEST_TIMEOUT_S)

    def outcomes(self, since: float = 0.0, until: float = float("inf")) -> list[Outcome]:
        """Requests answered between ``since`` and ``until`` (monotonic seconds)."""
        with self._lock:
            return [o for o in self._outcomes if since <= o.t <= until]

    def failures(self, since: float = 0.0, until: float = float("inf")) -> list[Outcome]:
        """The failed ones among :meth:`outcomes`."""
        return [o for o in self.outcomes(since, until) if not o.ok]

    def _user(self, rng: random.Random) -> None:
        headers = {"Authorization": f"Bearer {self._token}"}
        with httpx.Client(base_url=self._url, headers=headers,
                          timeout=REQUEST_TIMEOUT_S) as http:
            while not self._stop.is_set():
                self._running.wait()
                unseen = self._unseen and rng.random() < self.unseen_share
                query = rng.choice(self._unseen if unseen else self._subjects)
                self._record(self._ask(http, query))

    def _ask(self, http: httpx.Client, query: str) -> Outcome:
        start = time.monotonic()
        try:
            response = http.post("/v1/requests", json={"input": {"do": "ask", "query": query}})
        except httpx.HTTPError as exc:
            return Outcome(time.monotonic(), False, None, _ms(start), repr(exc))
        if response.status_code != 200:
            return Outcome(time.monotonic(), False, None, _ms(start),
                           f"HTTP {response.status_code}: {response.text[:200]}")
        body = response.json()
        return Outcome(time.monotonic(), True, body.get("version"), _ms(start), None)

    def _record(self, outcome: Outcome) -> None:
        with self._lock:
            self._outcomes.append(outcome)


def _ms(start: float) -> float:
    return (time.monotonic() - start) * 1000.0
