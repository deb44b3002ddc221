"""When an agent's tree gives up: the limit it counts against, and how long to back off.

The agent's instances are restarted by its
:class:`~project_o.supervisor.tree.SupervisionTree`, with OTP's restart
intensity (:class:`~project_o.supervisor.intensity.RestartIntensity`).
What differs from OTP is what "escalate" means for one agent version: the
host never gives up serving. It gives the version up for the previous
good one if there is one, else it waits and starts the tree again::

    deaths ──► tree: within its intensity ──► restart (takeover, fork)
                   └─► over it ──► the tree stops its children and ends
                                   ──► the host: fall back to a good version, or
                                       back_off() seconds, doubling up to MAX_BACKOFF
                                       while the trees keep failing, then a new tree

A death is one restart: the main's death with a standby ready is a
takeover (no restart) and the standby's slot is restarted by a fork.
The clock is injected, so tests move time by hand.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["FIRST_BACKOFF", "MAX_BACKOFF", "RestartPolicy"]

#: longest pause before a tree that gave up is started again
MAX_BACKOFF = 5.0
#: the first pause; doubles with each tree that gives up soon after it started
FIRST_BACKOFF = 0.1


class RestartPolicy:
    """The restart limit of one agent's tree, and the back-off when the tree gives up."""

    def __init__(
        self, max_restarts: int, max_seconds: float, *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        #: deaths allowed within ``max_seconds`` before the tree gives up
        self.max_restarts = max_restarts
        self.max_seconds = max_seconds
        self._clock = clock
        self._streak = 0
        self._started = clock()

    def started(self) -> None:
        """A tree was started now (how long it lives decides the next pause)."""
        self._started = self._clock()

    def back_off(self) -> float:
        """Seconds to wait before starting a tree again, the last one having given up."""
        if self._clock() - self._started >= self.max_seconds:
            self._streak = 0  # it served for a while: not the same crash loop
        delay = min(MAX_BACKOFF, FIRST_BACKOFF * 2.0 ** min(self._streak, 10))
        self._streak += 1
        return delay

    def clear(self) -> None:
        """Start afresh (a new version is served)."""
        self._streak = 0
