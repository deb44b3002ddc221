"""Restart intensity: how many restarts in how many seconds before giving up.

OTP's rule: a supervisor may restart at most ``max_restarts`` times within
any ``max_seconds`` window; the restart that would make it one more is
refused and the supervisor escalates instead of crash-looping::

    time ─────────────────────────────────────────────►
            r1   r2      r3        r4?
            │    │       │         │
            └────┴───────┴─────────┤  4 restarts inside max_seconds
                   window          └─ > max_restarts=3  → refuse (escalate)

The clock is injected so tests can freeze or jump time.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from project_o.errors import InvalidArgument

__all__ = ["DEFAULT_MAX_RESTARTS", "DEFAULT_MAX_SECONDS", "RestartIntensity"]

#: Three restarts in five seconds. OTP's own default is 1 in 5 s; we allow a
#: little more because our children (agent instances) are restarted by a
#: fork in milliseconds, and a transient fault (one poisoned request)
#: should not take a whole version down.
DEFAULT_MAX_RESTARTS = 3
DEFAULT_MAX_SECONDS = 5.0


class RestartIntensity:
    """A sliding window of restart times."""

    def __init__(
        self,
        max_restarts: int = DEFAULT_MAX_RESTARTS,
        max_seconds: float = DEFAULT_MAX_SECONDS,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(max_restarts, bool) or not isinstance(max_restarts, int) or max_restarts < 0:
            raise InvalidArgument(f"max_restarts must be an int >= 0, got {max_restarts!r}")
        if not max_seconds > 0:
            raise InvalidArgument(f"max_seconds must be > 0, got {max_seconds!r}")
        self.max_restarts = max_restarts
        self.max_seconds = float(max_seconds)
        self._clock = clock
        self._times: deque[float] = deque()

    def record(self) -> bool:
        """Count one restart now; False if that exceeds the limit (then: escalate)."""
        now = self._clock()
        self._times.append(now)
        self._forget_before(now - self.max_seconds)
        return len(self._times) <= self.max_restarts

    def recent(self) -> int:
        """Restarts counted inside the current window."""
        self._forget_before(self._clock() - self.max_seconds)
        return len(self._times)

    def clear(self) -> None:
        """Forget every restart (a fresh start: a new version, a new child)."""
        self._times.clear()

    def describe(self) -> str:
        """The limit in words, for messages."""
        return f"max_restarts={self.max_restarts} in max_seconds={self.max_seconds:g}"

    def _forget_before(self, horizon: float) -> None:
        # Strictly older than the window: a restart exactly max_seconds ago
        # still counts, as in OTP.
        while self._times and self._times[0] < horizon:
            self._times.popleft()
