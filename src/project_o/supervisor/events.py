"""What happened, and why: crashes, hangs, restarts, quarantines.

Events are kept in memory for ``GET /v1/status`` and written to the
catalog's ``events`` table on a background thread, so recording one never
blocks the event loop on an fsync. Subscribers (the metrics) see each
event as it is recorded::

    record(kind, subject, reason, **data) ──▶ recent (bounded, for /v1/status)
                                          ──▶ catalog.record_event (writer thread)
                                          ──▶ each subscriber(event)  (in the caller)

Bounded whatever an instance makes happen: a reason (which may quote what
an instance sent) is cut to :data:`MAX_REASON_CHARS`, and at most
:data:`MAX_PENDING_WRITES` events wait for the catalog's writer; past that
an event is still kept in memory and seen by subscribers, but not written
(``dropped`` counts them).
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from project_o.vault.catalog import Catalog

__all__ = ["EventLog"]

#: how many recent events `GET /v1/status` shows
RECENT_EVENTS = 200
#: characters of an event's reason kept
MAX_REASON_CHARS = 2000
#: events waiting for the catalog's writer thread at most
MAX_PENDING_WRITES = 1000

logger = logging.getLogger(__name__)


class EventLog:
    """A bounded in-memory log mirrored durably into the catalog."""

    def __init__(self, catalog: Catalog | None = None, *, keep: int = RECENT_EVENTS) -> None:
        self._recent: deque[dict[str, Any]] = deque(maxlen=keep)
        self._catalog = catalog
        self._writer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="events")
        self._subscribers: list[Callable[[dict[str, Any]], None]] = []
        self._pending = 0
        self._pending_lock = threading.Lock()  # the writer thread decrements it
        #: events not written to the catalog because its writer was too far behind
        self.dropped = 0

    def subscribe(self, callback: Callable[[dict[str, Any]], None]) -> None:
        """Call ``callback(event)`` for every event recorded from now on."""
        self._subscribers.append(callback)

    def record(self, kind: str, subject: str, reason: str, **data: Any) -> dict[str, Any]:
        """Remember one event; returns it."""
        if len(reason) > MAX_REASON_CHARS:
            reason = reason[:MAX_REASON_CHARS - 3] + "..."
        event = {"ts": time.time(), "kind": kind, "subject": subject, "reason": reason, **data}
        self._recent.append(event)
        if self._catalog is not None:
            self._write(kind, subject, reason, data)
        for callback in self._subscribers:
            try:
                callback(event)
            except Exception:  # an observer must not break what it observes
                logger.exception("event subscriber %r failed on %s", callback, kind)
        return event

    def _write(self, kind: str, subject: str, reason: str, data: dict[str, Any]) -> None:
        with self._pending_lock:
            if self._pending >= MAX_PENDING_WRITES:
                self.dropped += 1
                return
            self._pending += 1
        assert self._catalog is not None
        future = self._writer.submit(self._catalog.record_event, kind, subject, reason, data)
        future.add_done_callback(self._written)

    def _written(self, _: concurrent.futures.Future[Any]) -> None:
        with self._pending_lock:
            self._pending -= 1

    def recent(self, limit: int = 50) -> list[dict[str, Any]]:
        """The newest ``limit`` events, oldest first."""
        return list(self._recent)[-limit:]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        """Every remembered event of ``kind``."""
        return [event for event in self._recent if event["kind"] == kind]

    def close(self) -> None:
        """Finish pending catalog writes."""
        self._writer.shutdown(wait=True)
