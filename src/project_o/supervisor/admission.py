"""Back-pressure: how many requests each instance takes at once, and how many may wait.

::

    Dispatcher ── Admission.waiting() ── max_queued already wait? ──► Overloaded (503 + Retry-After)
                     │ counted while it waits for a main and for a slot
                     └─► InstanceGate(main).acquire(exclusive)
                           shared:    one of the instance's max_concurrency slots
                           exclusive: every slot (the instance runs nothing else): a
                                      suspect re-run apart after a death (see poison.py)
                           first come, first served: nobody overtakes a waiting suspect

An instance says in its hello how many requests it serves at once
(``max_concurrency``); the supervisor never sends it more, so what waits
waits here, where a deadline or a full queue can answer it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Iterator
from typing import Final

from project_o.errors import Overloaded
from project_o.supervisor.config import DEFAULT_MAX_QUEUED

__all__ = ["DEFAULT_MAX_QUEUED", "Admission", "InstanceGate"]

#: what Retry-After says to a client turned away by a full queue
RETRY_AFTER_S: Final = 1.0


class InstanceGate:
    """The slots of one instance, handed out in arrival order."""

    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, capacity)
        self.used = 0
        self._exclusive = False
        self._waiters: deque[tuple[asyncio.Future[None], bool]] = deque()

    def try_acquire(self, exclusive: bool = False) -> bool:
        """Take a slot now if one is free and nobody waits in line; whether it did."""
        if not self._waiters and self._fits(exclusive):
            self._take(exclusive)
            return True
        return False

    async def acquire(self, exclusive: bool = False) -> None:
        """Take a slot (``exclusive``: all of them), waiting in line if need be."""
        if self.try_acquire(exclusive):
            return
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (granted, exclusive)
        self._waiters.append(entry)
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():
                self.release(exclusive)  # granted as we were cancelled: give it back
            else:
                self._waiters.remove(entry)
                self._wake()  # we may have been the one holding the line
            raise

    def release(self, exclusive: bool = False) -> None:
        """Give back what :meth:`acquire` took."""
        if exclusive:
            self._exclusive = False
            self.used = 0
        else:
            self.used = max(0, self.used - 1)
        self._wake()

    @property
    def waiting(self) -> int:
        """Requests in line for this instance."""
        return len(self._waiters)

    def _fits(self, exclusive: bool) -> bool:
        if exclusive:
            return self.used == 0
        return not self._exclusive and self.used < self.capacity

    def _take(self, exclusive: bool) -> None:
        if exclusive:
            self._exclusive = True
            self.used = self.capacity
        else:
            self.used += 1

    def _wake(self) -> None:
        while self._waiters and self._fits(self._waiters[0][1]):
            granted, exclusive = self._waiters.popleft()
            if granted.done():
                continue
            self._take(exclusive)
            granted.set_result(None)


class Admission:
    """Counts the requests waiting for a slot; turns new ones away past the limit."""

    def __init__(self, max_queued: int = DEFAULT_MAX_QUEUED) -> None:
        self.max_queued = max_queued
        self.queued = 0

    @contextlib.contextmanager
    def waiting(self) -> Iterator[None]:
        """Count the caller as waiting for the block; Overloaded if the queue is full."""
        if self.queued >= self.max_queued:
            raise Overloaded(
                f"{self.queued} requests are already waiting for an instance (the limit); "
                f"retry in {RETRY_AFTER_S:g} s", retry_after_s=RETRY_AFTER_S)
        self.queued += 1
        try:
            yield
        finally:
            self.queued -= 1
