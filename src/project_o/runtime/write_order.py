"""Memory writes in flight, applied in the order the WAL holds them.

Many requests run at once in an instance, and each memory write is a
``wal_entry`` / ``wal_ack`` round trip. The supervisor appends entries to
the WAL in the order it reads them, so the order writes are *sent* in is
the WAL's order; acks may come back in another order (group commit
settles them together). Writes are therefore *released* (applied to the
stores, and returned to the agent code that made them) strictly in send
order::

    request A (a task)     await ajournal ─► wal_entry {id: 7} ─► supervisor: WAL 41
    request B (a thread)   journal       ─► wal_entry {id: 8} ─► supervisor: WAL 42
                                           ◄─ wal_ack {id: 8, sequence: 42}   held: 7 first
                                           ◄─ wal_ack {id: 7, sequence: 41}
                           release 7: applied on the loop, A resumes
                           release 8: B's thread applies it (the baton), then hands it back

A write made on the event loop is applied there, when it is released. So
is a worker thread's write to a store without a lock (key-value sets,
LLM history): the loop applies it and wakes the thread, so a run of acked
writes is released in one pass and their threads resume together. A
write to a store whose writers hold its lock while they journal
(semantic memory, blocks, history) is applied by the writing thread
(the loop must never wait for that lock): while it does, it holds the
*baton*, and nothing else is released and no checkpoint is taken until it
hands the baton back. So the stores always hold exactly the writes up to
:attr:`WriteOrder.last_sequence`, which is what a checkpoint claims.

In a pool of mains, the other mains' writes come as tail entries
(:meth:`WriteOrder.tailed`), each with its WAL sequence. The supervisor
queues tails and acks on one socket in WAL order, so when a tail comes,
every write of ours before it is acked and every write still unacked comes
after it: the tail takes its place right after the acked ones, and
everything is applied in WAL order, tails and our own writes alike::

    pending   [ours 41 acked, held by the baton] [tail 42] [ours ?, unacked]
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from project_o.errors import ProtocolError

__all__ = ["PendingWrite", "WriteOrder"]

#: sends one ``wal_entry {id, operation, data}`` frame
SendEntry = Callable[[int, str, dict[str, Any]], None]
#: applies one released write to the agent's stores
ApplyWrite = Callable[[str, dict[str, Any]], None]


@dataclass(eq=False)
class PendingWrite:
    """One write sent and not yet released."""

    id: int
    operation: str
    data: dict[str, Any]
    #: set on the loop for a write awaited there; None for a worker thread's write
    future: asyncio.Future[None] | None
    sequence: int | None = None
    #: another main's write (a WAL tail entry): applied here, nobody waits for it
    tail: bool = False
    #: a worker thread's write: set when it may apply it (it holds the baton then),
    #: or once the loop applied it (``applied``)
    released: threading.Event | None = None
    #: a worker thread's write the loop applied for it
    applied: bool = False
    #: what applying it raised (the writer raises it)
    error: BaseException | None = None

    def release(self) -> None:
        """Wake the worker thread waiting for this write (a loop's write has none)."""
        if self.released is not None:
            self.released.set()


class WriteOrder:
    """Sends writes, matches their acks by id, releases them in send order."""

    def __init__(self, send: SendEntry, apply: ApplyWrite,
                 on_released: Callable[[int], None],
                 thread_applies: Callable[[str], bool] = lambda operation: True,
                 apply_tail: ApplyWrite | None = None) -> None:
        """``on_released(sequence)`` runs on the loop once a write of ours is applied;
        ``thread_applies(operation)``: whether a worker thread's write of it must be
        applied by that thread (its store's lock), not by the loop; ``apply_tail``
        applies another main's write (default: ``apply``)."""
        self._send = send
        self._apply = apply
        self._apply_tail = apply_tail or apply
        self._on_released = on_released
        self._thread_applies = thread_applies
        self._lock = threading.Lock()  # send order == queue order, from any thread
        self._pending: deque[PendingWrite] = deque()
        self._by_id: dict[int, PendingWrite] = {}
        self._next_id = 1
        self._baton: PendingWrite | None = None
        self._tails = 0
        #: the sequence of the newest write applied (the stores hold all up to it)
        self.last_sequence = 0

    @property
    def baton_out(self) -> bool:
        """A worker thread is applying a released write (no checkpoint now)."""
        return self._baton is not None

    @property
    def in_flight(self) -> int:
        """Writes sent and not yet released (tail entries not counted)."""
        return len(self._pending) - self.tails_waiting

    @property
    def tails_waiting(self) -> int:
        """Other mains' entries received and not yet applied (they wait for ours before)."""
        return self._tails

    def tailed(self, sequence: int, operation: str, data: dict[str, Any]) -> None:
        """On the loop: another main's write, applied in its WAL place among ours.

        One at or below :attr:`last_sequence` is already held (a restore
        covered it) and is skipped. ProtocolError if it cannot be applied.
        """
        if sequence <= self.last_sequence:
            return
        tail = PendingWrite(0, operation, data, None, sequence, tail=True)
        with self._lock:
            # Right after our acked writes: they are before it in the WAL, the rest after.
            at = next((i for i, w in enumerate(self._pending) if w.sequence is None),
                      len(self._pending))
            self._pending.insert(at, tail)
            self._tails += 1
        self._release()

    def submit(self, operation: str, data: dict[str, Any],
               future: asyncio.Future[None] | None) -> PendingWrite:
        """Send one write (from any thread); ``future``: resolve it on release instead."""
        with self._lock:
            write = PendingWrite(self._next_id, operation, data, future,
                                 released=threading.Event() if future is None else None)
            self._next_id += 1
            self._send(write.id, operation, data)  # raises before the write is queued
            self._pending.append(write)
            self._by_id[write.id] = write
        return write

    def acked(self, entry_id: Any, sequence: Any) -> None:
        """On the loop: the supervisor acked ``entry_id``; ProtocolError if it lies."""
        if isinstance(sequence, bool) or not isinstance(sequence, int):
            raise ProtocolError(f"wal_ack needs an int sequence, got {sequence!r}")
        with self._lock:
            write = self._by_id.pop(entry_id, None) if isinstance(entry_id, int) else None
        if write is None:
            raise ProtocolError(f"wal_ack for {entry_id!r}, which is no write in flight")
        write.sequence = sequence
        self._release()

    def returned(self, write: PendingWrite) -> None:
        """On the loop: a worker thread applied ``write`` and hands the baton back."""
        if self._baton is write:
            self._baton = None
            self._done(write)
            self._release()

    def _release(self) -> None:
        while self._baton is None and self._pending and self._pending[0].sequence is not None:
            with self._lock:
                write = self._pending.popleft()
            assert write.sequence is not None
            if write.tail:
                self._release_tail(write)
                continue
            if write.sequence <= self.last_sequence:
                raise ProtocolError(f"wal_ack sequence {write.sequence} is not above "
                                 f"{self.last_sequence}: the WAL's order broke")
            if write.future is not None:
                self._release_here(write)
            elif not self._thread_applies(write.operation):
                self._apply_for_thread(write)
            else:
                self._baton = write
                write.release()
                return

    def _apply_for_thread(self, write: PendingWrite) -> None:
        try:
            self._apply(write.operation, write.data)
        except Exception as exc:  # noqa: BLE001 - the writer hears of it
            write.error = exc
        write.applied = True
        self._done(write)
        write.release()

    def _release_tail(self, tail: PendingWrite) -> None:
        assert tail.sequence is not None
        self._tails -= 1
        if tail.sequence <= self.last_sequence:
            raise ProtocolError(f"WAL tail entry {tail.sequence} is not above "
                                f"{self.last_sequence}: the WAL's order broke")
        try:
            self._apply_tail(tail.operation, tail.data)
        except Exception as exc:  # the memory would diverge: the instance ends
            raise ProtocolError(f"WAL tail entry {tail.sequence} cannot be applied: "
                                f"{exc}") from exc
        self.last_sequence = tail.sequence

    def _release_here(self, write: PendingWrite) -> None:
        future = write.future
        assert future is not None
        try:
            self._apply(write.operation, write.data)
        except Exception as exc:  # noqa: BLE001 - the writer hears of it, as with a sync write
            self._done(write)
            if not future.done():
                future.set_exception(exc)
            return
        self._done(write)
        if not future.done():
            future.set_result(None)

    def _done(self, write: PendingWrite) -> None:
        assert write.sequence is not None
        self.last_sequence = write.sequence
        self._on_released(write.sequence)

    def fail(self, error: BaseException) -> None:
        """The instance is going down: wake every writer (threads check its fatal error)."""
        with self._lock:
            pending, self._pending = list(self._pending), deque()
            self._by_id.clear()
            self._tails = 0
        for write in pending:
            if write.future is not None and not write.future.done():
                write.future.set_exception(error)
            write.release()
