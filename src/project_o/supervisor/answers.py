"""Which version answered each recent request, and which versions have proved themselves.

Feedback arrives later and names a request id; the version that answered
it is what the feedback is about (:meth:`AnswerBook.version_of`). A
version is marked "good" in the catalog once it has answered a request
(:meth:`AnswerBook.prove`), unless an experiment owns its status (``trust``).
"""

from __future__ import annotations

from collections import OrderedDict

__all__ = ["RECENT_ANSWERS", "AnswerBook"]

#: answered requests whose version is remembered for feedback: at 100 requests
#: a second that is over a quarter of an hour, in about 20 MB at most
RECENT_ANSWERS = 100_000


class AnswerBook:
    """A bounded request id -> version map, and the set of versions already proven."""

    def __init__(self, capacity: int = RECENT_ANSWERS) -> None:
        self._capacity = capacity
        self._answered: OrderedDict[str, str] = OrderedDict()
        self._proven: set[str] = set()

    def remember(self, request_id: str, version: str) -> None:
        """Record that ``version`` answered ``request_id``; the oldest is forgotten past capacity."""
        self._answered[request_id] = version
        if len(self._answered) > self._capacity:
            self._answered.popitem(last=False)

    def version_of(self, request_id: str) -> str | None:
        """The version that answered ``request_id``, if it was answered recently."""
        return self._answered.get(request_id)

    def trust(self, version: str) -> None:
        """Never report ``version`` as newly proven (an experiment owns its status)."""
        self._proven.add(version)

    def prove(self, version: str) -> bool:
        """``version`` answered a request: True the first time (mark it good then)."""
        if version in self._proven:
            return False
        self._proven.add(version)
        return True
