"""Poison pills: a request that killed instance after instance is quarantined.

Only a death the request itself can be blamed for counts: it was the only
request in flight on the instance, and the instance's zygote is alive (a
dead zygote takes its instances along, PR_SET_PDEATHSIG, whatever they
were doing). When an instance dies with several requests in flight, any
of them may have killed it: each becomes a *suspect* and is re-run apart
(the dispatcher gives it the instance to itself), where a death can only
be its own. So the poison is found and quarantined, and the innocent ones
are answered::

    death with r1, r2, r3 in flight ──► suspects r1, r2, r3; each re-run alone
      r1 alone: answered ──────────────► forgiven
      r2 alone: kills the instance ────► one kill; alone again: a second ─► quarantined
      r3 alone: answered ──────────────► forgiven
"""

from __future__ import annotations

__all__ = ["PoisonTracker"]


class PoisonTracker:
    """Counts, per request, the instances it killed in a row; knows the suspects."""

    def __init__(self, threshold: int) -> None:
        self.threshold = threshold
        self._kills: dict[str, int] = {}
        self._suspects: set[str] = set()

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
        self._suspects.discard(request_id)

    def suspect(self, request_id: str) -> None:
        """``request_id`` was in flight with others when an instance died: run it apart."""
        self._suspects.add(request_id)

    def is_suspect(self, request_id: str) -> bool:
        """Whether ``request_id`` must be run with nothing else in flight."""
        return request_id in self._suspects

    def settle(self, request_id: str) -> None:
        """The request is over, however it ended: forget its kills and suspicion."""
        self._kills.pop(request_id, None)
        self._suspects.discard(request_id)
