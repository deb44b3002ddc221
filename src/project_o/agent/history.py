"""The episodic log: what was said, by whom, in which request (``ctx.history``).

::

    ctx.history.record("user", "hi", channel="web")
        │ time and request id chosen here, before journaling, so replay is exact
        ▼
    journal("history_record", {role, content, request_id, time, metadata})
        ▼
    HistoryStore ── entries (oldest first, at most `limit`) ── Entry(seq, role, content,
                                                                     request_id, time, metadata)
    ctx.history.recent(10)              the last 10 entries, oldest first (prompt order)
    ctx.history.conversation()          this request's entries; conversation(rid): another's

    runtime, after a handler answered (optional):
    kit.history.record_exchange(rid, request, response)
        ─► journal("history_exchange", {request_id, time, request, response})
        ─► two entries, "user" then "assistant": one durable write, not two

Entries beyond the store's ``limit`` (default :data:`DEFAULT_HISTORY_LIMIT`)
drop off the old end on apply, so live state, replay and a restored
checkpoint (``agent_state["history"]``) agree.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import msgpack

from project_o.agent.store import APPLIED, DurableWrite
from project_o.errors import InvalidArgument
from project_o.wire import ensure_packable

__all__ = [
    "DEFAULT_HISTORY_LIMIT",
    "HISTORY_EXCHANGE",
    "HISTORY_OPERATIONS",
    "HISTORY_RECORD",
    "Entry",
    "History",
    "HistoryStore",
]

HISTORY_RECORD: Final = "history_record"
HISTORY_EXCHANGE: Final = "history_exchange"
HISTORY_OPERATIONS: Final = frozenset({HISTORY_RECORD, HISTORY_EXCHANGE})
#: entries kept: months of a personal assistant's chat, a few MB in a checkpoint;
#: what must outlive that belongs in semantic memory (remember)
DEFAULT_HISTORY_LIMIT: Final = 10_000
#: the snapshot layout this module writes
SNAPSHOT_FORMAT: Final = 1
#: the roles record_exchange writes
USER, ASSISTANT = "user", "assistant"


@dataclass(frozen=True, slots=True)
class Entry:
    """One thing said: ``seq`` counts every entry ever recorded (1, 2, ...)."""

    seq: int
    role: str
    content: Any
    request_id: Any = None
    time: float = 0.0
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-like view (what a handler can return)."""
        return {"seq": self.seq, "role": self.role, "content": copy.deepcopy(self.content),
                "request_id": self.request_id, "time": self.time,
                "metadata": copy.deepcopy(self.metadata)}


class HistoryStore:
    """The log itself: a bounded deque of entries; a durable Store."""

    name: Final = "history"
    section: Final = "agent_state"
    operations: Final = HISTORY_OPERATIONS

    def __init__(self, limit: int = DEFAULT_HISTORY_LIMIT) -> None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InvalidArgument(f"the history limit must be a positive int, got {limit!r}")
        self.limit = limit
        self.lock = threading.RLock()  # see SemanticStore.lock
        self._entries: deque[Entry] = deque(maxlen=limit)
        self._next = 1

    def __len__(self) -> int:
        return len(self._entries)

    def recent(self, n: int, role: str | None = None) -> list[Entry]:
        """The last ``n`` entries (of ``role`` if given), oldest first."""
        found: list[Entry] = []
        for entry in reversed(self._entries):
            if len(found) >= n:
                break
            if role is None or entry.role == role:
                found.append(entry)
        return found[::-1]

    def conversation(self, request_id: Any) -> list[Entry]:
        """Every kept entry of request ``request_id``, oldest first."""
        return [entry for entry in self._entries if entry.request_id == request_id]

    def apply(self, operation: str, data: Mapping[str, Any]) -> None:
        """Apply one journaled ``history_record`` or ``history_exchange``."""
        if operation not in HISTORY_OPERATIONS or not isinstance(data, Mapping):
            raise InvalidArgument(
                f"{operation!r} with {type(data).__name__} data is not a history operation; "
                f"expected one of {sorted(HISTORY_OPERATIONS)} with a map"
            )
        request_id, when = data.get("request_id"), _time(data)
        if operation == HISTORY_EXCHANGE:
            self._add(USER, data.get("request"), request_id, when, {})
            self._add(ASSISTANT, data.get("response"), request_id, when, {})
            return
        metadata = data.get("metadata") or {}
        if not isinstance(metadata, Mapping):
            raise InvalidArgument(f"history_record metadata must be a map, got {metadata!r:.80}")
        self._add(check_role(data.get("role")), data.get("content"), request_id, when,
                  dict(metadata))

    def _add(self, role: str, content: Any, request_id: Any, when: float,
             metadata: dict[str, Any]) -> None:
        self._entries.append(Entry(self._next, role, _plain(content), _plain(request_id),
                                   when, _plain(metadata)))
        self._next += 1

    def snapshot(self) -> dict[str, Any]:
        """The kept entries as rows ``[seq, role, content, request_id, time, metadata]``."""
        rows = [[e.seq, e.role, e.content, e.request_id, e.time, e.metadata]
                for e in self._entries]
        return {"format": SNAPSHOT_FORMAT, "next": self._next, "entries": rows}

    def load(self, snapshot: Any) -> None:
        """Replace the log with ``snapshot`` (the newest ``limit`` entries of it)."""
        if not isinstance(snapshot, Mapping) or snapshot.get("format") != SNAPSHOT_FORMAT:
            raise InvalidArgument(
                f"a history snapshot must be a map with format {SNAPSHOT_FORMAT}, "
                f"got {snapshot!r:.80}"
            )
        entries: deque[Entry] = deque(maxlen=self.limit)
        for seq, role, content, request_id, when, metadata in snapshot["entries"]:
            entries.append(Entry(int(seq), str(role), content, request_id, float(when),
                                 dict(metadata)))
        self._entries = entries
        self._next = int(snapshot["next"])


class History:
    """``ctx.history`` for one request: journaled records, reads of the whole log."""

    def __init__(self, store: HistoryStore, journal: DurableWrite, request_id: Any = None,
                 clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._journal = journal
        self.request_id = request_id
        self._clock = clock

    def bound(self, request_id: Any) -> History:
        """The same log, recording under ``request_id`` (what each request's ctx gets)."""
        return History(self._store, self._journal, request_id, self._clock)

    def record(self, role: str, content: Any, **metadata: Any) -> int:
        """Durably append what ``role`` said; return the entry's ``seq``."""
        check_role(role)
        ensure_packable(content, "history content")
        ensure_packable(metadata, "history metadata")
        data = {"role": role, "content": content, "request_id": self.request_id,
                "time": self._clock(), "metadata": metadata}
        with self._store.lock:
            if self._journal(HISTORY_RECORD, data) is not APPLIED:
                self._store.apply(HISTORY_RECORD, data)
            return self._store.recent(1)[0].seq

    async def arecord(self, role: str, content: Any, **metadata: Any) -> int:
        """:meth:`record`, awaitable (an async def handler): it runs on a worker thread."""
        return await asyncio.to_thread(functools.partial(self.record, role, content,
                                                         **metadata))

    def record_exchange(self, request_id: Any, request: Any, response: Any) -> None:
        """Durably log a request and its response as one write (for the runtime)."""
        ensure_packable(request, "request")
        ensure_packable(response, "response")
        data = {"request_id": request_id, "time": self._clock(),
                "request": request, "response": response}
        with self._store.lock:
            if self._journal(HISTORY_EXCHANGE, data) is not APPLIED:
                self._store.apply(HISTORY_EXCHANGE, data)

    def recent(self, n: int = 10, role: str | None = None) -> list[Entry]:
        """The last ``n`` entries (of ``role`` if given), oldest first."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise InvalidArgument(f"n must be a non-negative int, got {n!r}")
        with self._store.lock:
            return self._store.recent(n, role)

    def conversation(self, request_id: Any = None) -> list[Entry]:
        """The entries of ``request_id`` (default: this request), oldest first."""
        with self._store.lock:
            return self._store.conversation(self.request_id if request_id is None else request_id)

    def __len__(self) -> int:
        return len(self._store)


def check_role(role: object) -> str:
    """``role`` if it is a usable role name (non-empty str, at most 64 chars)."""
    if not isinstance(role, str) or not role.strip() or len(role) > 64:
        raise InvalidArgument(
            f"a history role must be a non-empty str of at most 64 characters "
            f"(user, assistant, tool...), got {role!r:.80}"
        )
    return role


def _time(data: Mapping[str, Any]) -> float:
    when = data.get("time", 0.0)
    if isinstance(when, bool) or not isinstance(when, (int, float)):
        raise InvalidArgument(f"a history entry's time must be a number, got {when!r:.80}")
    return float(when)


def _plain(value: Any) -> Any:
    """A private copy, exactly as a replay would see it (tuples become lists)."""
    return msgpack.unpackb(msgpack.packb(value, use_bin_type=True), raw=False)
