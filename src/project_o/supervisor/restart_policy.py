"""When an agent's instance dies: replace it at once, give its version up, or slow down.

The agent host's restart intensity is the supervision tree's
:class:`~project_o.supervisor.intensity.RestartIntensity`; what differs
is what "escalate" means for instances of one agent version::

    death ──► record() ──► within max_restarts in max_seconds ──► REPLACE now
                       └─► over it ──► ESCALATE: the host gives the version up for the
                                       previous good one if there is one (clear());
                                       else it backs off ``delay`` seconds and replaces,
                                       doubling up to MAX_BACKOFF, never crash-looping

The clock is injected, so tests move time by hand.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from project_o.supervisor.intensity import RestartIntensity

__all__ = ["MAX_BACKOFF", "RestartDecision", "RestartPolicy", "Verdict"]

#: longest pause between replacements once restart intensity is exceeded
MAX_BACKOFF = 5.0
#: the first pause past the limit; doubles with each further restart
FIRST_BACKOFF = 0.1


class Verdict(Enum):
    """What to do about one more restart."""

    REPLACE = "replace"  # within the intensity
    ESCALATE = "escalate"  # over it: fall back to a good version, or back off


@dataclass(frozen=True)
class RestartDecision:
    """A verdict, with the pause to take if the host backs off and the reason in words."""

    verdict: Verdict
    delay: float = 0.0
    reason: str = ""


class RestartPolicy:
    """Restart intensity for the instances of the version being served."""

    def __init__(
        self, max_restarts: int, max_seconds: float, *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._intensity = RestartIntensity(max_restarts, max_seconds, clock=clock)

    def record(self) -> RestartDecision:
        """Count one restart now and say what to do about it."""
        if self._intensity.record():
            return RestartDecision(Verdict.REPLACE)
        recent, limit = self._intensity.recent(), self._intensity.max_restarts
        excess = recent - limit
        delay = min(MAX_BACKOFF, FIRST_BACKOFF * 2 ** min(excess - 1, 10))
        return RestartDecision(
            Verdict.ESCALATE, delay,
            f"{recent} restarts in {self._intensity.max_seconds:g} s exceed the limit of {limit}",
        )

    def clear(self) -> None:
        """Start counting afresh (a new version is served)."""
        self._intensity.clear()

    @property
    def max_restarts(self) -> int:
        """How many restarts the window allows."""
        return self._intensity.max_restarts

    @property
    def max_seconds(self) -> float:
        """The window's length in seconds."""
        return self._intensity.max_seconds
