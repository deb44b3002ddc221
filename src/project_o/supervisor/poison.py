"""Poison pills: a request that killed instance after instance is quarantined.

Only a death the request itself can be blamed for counts: the instance was
working on it (it was the oldest in flight, :attr:`InstanceHandle.culprit`)
and its zygote is alive (a dead zygote takes its instances along,
PR_SET_PDEATHSIG, whatever they were doing).
"""

from __future__ import annotations

__all__ = ["PoisonTracker"]


class PoisonTracker:
    """Counts, per request, the instances it killed in a row."""

    def __init__(self, threshold: int) -> None:
        self.threshold = threshold
        self._kills: dict[str, int] = {}

    def blame(self, request_id: str) -> int | None:
        """One more kill by ``request_id``: the count when it is now quarantined, else None."""
        kills = self._kills.get(request_id, 0) + 1
        if kills < self.threshold:
            self._kills[request_id] = kills
            return None
        self._kills.pop(request_id, None)
        return kills

    def forgive(self, request_id: str) -> None:
        """``request_id`` was answered: it killed nothing in the end."""
        self._kills.pop(request_id, None)
