"""The write-ahead log: every memory write, durable before it is acknowledged.

On disk (docs/design.md, "WAL segments")::

    VAULT/wal/
      00000000000000000001.wal    records 1 .. 4711       (segment named by its
      00000000000000004712.wal    records 4712 .. 9020     first sequence, 20 digits)
      00000000000000009021.wal    records 9021 .. (active: appends go here)

Each segment is ``[u32 BE size][msgpack entry]`` records; see
:mod:`project_o.vault.wal_record` for the record layout.

Write path (group commit)::

    writer threads                          one round at a time (write lock)
    ──────────────                          ────────────────────────────────
    pack operation+data   (no lock)
    lock: seq += 1, encode,            ┌──▶ take all pending records
          queue record + waiter   ─────┤    one pwrite() per segment, roll over if full
    sync:  lead a round if none runs,  │    fdatasync (one for every queued writer)
           else wake the flusher;      │    durable = last written; wake its writers
           sleep on the waiter ◀───────┘
    batch: write the record, return;  flusher syncs every N entries or T seconds

Two committers, one per durability, each a thread (the *flusher*):

* sync (group commit): whoever finds no round running leads one inline (a
  lone writer pays one fsync and no thread hand-off); writers that arrive
  meanwhile queue up and the flusher runs the next round for all of them.
* batch: ``append`` writes its record itself; the flusher fsyncs every
  ``batch_entries`` entries or ``batch_interval`` seconds.

``submit`` and ``submit_acknowledged`` (what the supervisor's event loop
calls) never block and never take the write lock: they queue the record,
wake the flusher and hand back a future, resolved once the record is
fsynced (``submit``) or when ``append`` would have returned, fsynced or
written (``submit_acknowledged``). The thread waits on the disk, the loop
does not.

Preallocation: the active segment grows in zero-filled steps of
:data:`PREALLOCATE_STEP`, and records overwrite those zeros::

    active segment:  [record][record][record][0 0 0 0 0 0 0 0 0 0 0 0]
                                             ^ logical end    ^ file size

Overwriting allocated blocks changes no metadata, so each round syncs with
``fdatasync`` and the filesystem journal stays out of the way (an fsync
that grows a file commits the journal: on ext4 about 1.5x slower, and
it queues behind every other process's commits). A segment is trimmed to
its logical end when it is sealed (rollover) or closed; after a crash,
open trims the zeros; scan reports them as ``padding``, not a torn tail.

Failure: an OSError on write or fsync is fatal. After a failed fsync the
kernel may have dropped the dirty pages and a second fsync can report
success for data that is gone (the 2018 PostgreSQL "fsyncgate"), so we
never retry: every waiter gets :class:`WALFatalError`, nothing unsynced is
acknowledged, and every later append is refused. Reopening recovers what
is on disk.

Open: every segment is read and verified (checksums, names, +1 sequence
continuity). A bad record with nothing valid after it at the end of the
last segment is a torn write from a crash: it is truncated and reported in
:attr:`WAL.torn_tail`. Anything else raises :class:`WALCorruption`.

Sealed records (a keyring: encryption at rest) are checked the same way,
without the key. Before anything is cut, open checks that every sealed
record recovery would replay names a key of the keyring, and raises
:class:`~project_o.errors.VaultKeyError` otherwise: a missing key never
looks like a torn tail. Replay opens each record; one whose tag fails is
:class:`WALCorruption`, never skipped.
"""

from __future__ import annotations

import collections
import fcntl
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, NamedTuple, Self

from project_o.errors import (
    InvalidArgument,
    VaultClosed,
    VaultError,
    VaultKeyError,
    WALCorruption,
    WALFatalError,
)
from project_o.vault.fileio import FileLayer, pwrite_all
from project_o.vault.sealing import Keyring, NonceSequence, SealBroken, missing_key
from project_o.vault.wal_record import (
    Payload,
    Problem,
    SealedEntry,
    WALEntry,
    encode_record,
    encode_sealed_record,
    open_sealed,
    pack_payload,
    walk_segment,
)

__all__ = [
    "DEFAULT_BATCH_ENTRIES",
    "DEFAULT_BATCH_INTERVAL",
    "DEFAULT_SEGMENT_SIZE",
    "PADDING_REASON",
    "PREALLOCATE_STEP",
    "WAL",
    "Corruption",
    "SegmentInfo",
    "TornTail",
    "WALEntry",
    "WALScan",
    "scan",
    "segment_files",
    "segment_name",
]

#: Roll over to a new segment past this size: big enough that rollover
#: (two fsyncs and a directory fsync) is rare, small enough that a
#: checkpoint can soon delete whole segments.
DEFAULT_SEGMENT_SIZE = 64 * 1024 * 1024
#: Grow the active segment this much at a time (zero-filled): ~3000 entries
#: per step, so the one metadata-changing sync per step is noise.
PREALLOCATE_STEP = 1024 * 1024
#: Batch durability: fsync every 100 entries or every second, whichever comes
#: first; that much is what a machine crash may cost in batch mode.
DEFAULT_BATCH_ENTRIES = 100
DEFAULT_BATCH_INTERVAL = 1.0

#: TornTail.reason of zeros after the last record: preallocated space, not damage.
PADDING_REASON = "zero padding after the last record (preallocated space)"
_SUFFIX = ".wal"
_NAME = re.compile(r"^(\d{20})\.wal$")
_Durability = Literal["sync", "batch"]
#: What a queued writer waits on: a raw lock released by the round (append,
#: cheaper than a Future) or a Future (submit).
_Waiter = Any


def segment_name(first_sequence: int) -> str:
    """The file name of the segment whose first record has ``first_sequence``."""
    return f"{first_sequence:020d}{_SUFFIX}"


@dataclass(frozen=True)
class TornTail:
    """The end of the last segment that was cut off (or would be, in a scan)."""

    path: Path
    offset: int
    bytes_truncated: int
    reason: str


class SegmentInfo(NamedTuple):
    """One segment as :func:`scan` found it."""

    path: Path
    first_sequence: int
    entries: int
    size: int


class Corruption(NamedTuple):
    """A damaged spot that is not a torn tail."""

    path: Path
    offset: int
    reason: str


@dataclass
class WALScan:
    """Read-only report on a WAL directory (``project-o vault verify``)."""

    directory: Path
    segments: list[SegmentInfo] = field(default_factory=list)
    entries: int = 0
    first_sequence: int | None = None
    last_sequence: int | None = None
    torn_tail: TornTail | None = None
    corruption: list[Corruption] = field(default_factory=list)
    #: Zero bytes after the last record of the last segment: space the WAL
    #: preallocated (a live WAL, or one that crashed). Not damage.
    padding: int = 0
    repaired: bool = False
    #: sealed records per key id (8 hex digits): which keys the log still needs
    sealed: dict[str, int] = field(default_factory=dict)
    #: sealed records not checked because their key was not given, per key id
    unopened: dict[str, int] = field(default_factory=dict)

    @property
    def sound(self) -> bool:
        """True when nothing but (at most) a torn tail was found."""
        return not self.corruption

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able view."""
        return {
            "directory": str(self.directory),
            "segments": [{**s._asdict(), "path": str(s.path)} for s in self.segments],
            "entries": self.entries,
            "first_sequence": self.first_sequence,
            "last_sequence": self.last_sequence,
            "torn_tail": None
            if self.torn_tail is None
            else {**self.torn_tail.__dict__, "path": str(self.torn_tail.path)},
            "corruption": [{**c._asdict(), "path": str(c.path)} for c in self.corruption],
            "padding": self.padding,
            "repaired": self.repaired,
            "sealed": dict(self.sealed),
            "unopened": dict(self.unopened),
            "sound": self.sound,
        }


def scan(directory: Path, *, repair: bool = False, keyring: Keyring | None = None) -> WALScan:
    """Verify every segment under ``directory`` and report; never raises for corruption.

    Sealed records are opened with ``keyring`` and a tag that does not
    verify is corruption; those whose key is missing are counted in
    ``unopened`` (checksummed, but not authenticated).

    With ``repair=True`` a torn tail (or preallocated padding) is truncated,
    as opening the WAL would do, but only when nothing else is wrong (a
    corrupt log is left exactly as found for whoever restores it) and no
    WAL has the directory open (its writer owns the tail); ``repaired``
    says whether it happened.
    """
    report = WALScan(Path(directory))
    segments = _list_segments(report.directory)
    previous_last: int | None = None
    cut: TornTail | None = None
    for index, (first, path) in enumerate(segments):
        if previous_last is not None and first != previous_last + 1:
            report.corruption.append(Corruption(path, 0, _gap_reason(first, previous_last)))
        buf = path.read_bytes()
        count, last = 0, first - 1
        for item in walk_segment(buf, first):
            if not isinstance(item, Problem):
                count, last = count + 1, item.sequence
                if report.first_sequence is None:
                    report.first_sequence = item.sequence
                report.last_sequence = item.sequence
                if isinstance(item, SealedEntry):
                    _check_sealed(report, path, item, keyring)
            elif item.at_tail and index == len(segments) - 1:
                tail = _tail(path, buf, item)
                if tail.reason == PADDING_REASON:
                    report.padding, cut = tail.bytes_truncated, tail
                else:
                    report.torn_tail = cut = tail
            else:
                report.corruption.append(Corruption(path, item.offset, item.reason))
        report.segments.append(SegmentInfo(path, first, count, len(buf)))
        report.entries += count
        previous_last = last
    if repair and cut is not None and report.sound:
        report.repaired = _repair(report.directory, cut)
    return report


def _check_sealed(
    report: WALScan, path: Path, entry: SealedEntry, keyring: Keyring | None
) -> None:
    key = f"{entry.key_id:08x}"
    report.sealed[key] = report.sealed.get(key, 0) + 1
    try:
        open_sealed(entry, keyring, f"WAL record {entry.sequence}")
    except VaultKeyError:
        report.unopened[key] = report.unopened.get(key, 0) + 1
    except SealBroken as broken:
        report.corruption.append(Corruption(path, entry.offset, f"sealed record "
                                            f"{entry.sequence}: {broken}"))


def _repair(directory: Path, cut: TornTail) -> bool:
    try:
        lock_fd = _lock_directory(directory)
    except VaultError:
        return False  # a live writer: its tail is not ours to cut
    try:
        _cut_tail(FileLayer(), cut)
    finally:
        os.close(lock_fd)
    return True


class WAL:
    """An open write-ahead log directory; build it with :meth:`WAL.open`."""

    torn_tail: TornTail | None
    """What :meth:`open` cut off the end of the last segment, if anything."""

    @classmethod
    def open(
        cls,
        directory: Path,
        *,
        durability: _Durability = "sync",
        segment_size: int = DEFAULT_SEGMENT_SIZE,
        batch_entries: int = DEFAULT_BATCH_ENTRIES,
        batch_interval: float = DEFAULT_BATCH_INTERVAL,
        file_layer: FileLayer | None = None,
        start_sequence: int = 1,
        keyring: Keyring | None = None,
    ) -> WAL:
        """Open (creating if missing) the WAL in ``directory`` = ``VAULT/wal``.

        With a ``keyring``, new records are sealed with its current key and
        sealed ones are opened on replay. Every sealed record from
        ``start_sequence`` on (what a recovery replays) must name a key of
        the keyring, or :class:`~project_o.errors.VaultKeyError` is raised
        before anything is truncated; without a keyring, a sealed record
        there raises it too.

        Verifies every segment, truncates a torn tail, and continues after
        the last entry. ``start_sequence`` is the first sequence when the
        log holds nothing at or after it: a fresh log, or one whose every
        entry a checkpoint already covers (pass the checkpoint's last
        sequence + 1). In the latter case the old segments are deleted so
        new entries are never numbered below the checkpoint.

        Raises :class:`WALCorruption` if a segment is damaged anywhere but
        at the very end of the last one.
        """
        _check_options(durability, segment_size, batch_entries, batch_interval, start_sequence)
        layer = file_layer or FileLayer()
        directory = Path(directory)
        _ensure_directory(directory, layer)
        lock_fd = _lock_directory(directory)
        try:
            segments, next_seq, torn = _recover(directory, layer, start_sequence, keyring)
            return cls(
                directory,
                layer,
                lock_fd,
                segments,
                next_seq,
                torn,
                durability,
                segment_size,
                batch_entries,
                batch_interval,
                keyring,
            )
        except BaseException:
            os.close(lock_fd)
            raise

    def __init__(
        self,
        directory: Path,
        layer: FileLayer,
        lock_fd: int,
        segments: list[tuple[int, Path]],
        next_sequence: int,
        torn_tail: TornTail | None,
        durability: _Durability,
        segment_size: int,
        batch_entries: int,
        batch_interval: float,
        keyring: Keyring | None = None,
    ) -> None:
        """Use :meth:`WAL.open`; this only wires up an already recovered directory."""
        self.torn_tail = torn_tail
        self._keyring = keyring
        # One nonce sequence per open WAL (see NonceSequence for why a counter).
        self._nonces = NonceSequence() if keyring is not None else None
        self._directory = directory
        self._layer = layer
        self._lock_fd = lock_fd
        self._sync = durability == "sync"
        self._segment_size = segment_size
        self._batch_entries = batch_entries
        self._batch_interval = batch_interval
        self._segments = segments
        active = segments[-1][1]
        self._fd = layer.open(active, os.O_WRONLY)
        # Logical end (where the next record goes) and allocated size; open
        # trimmed any zero padding, so they start equal.
        self._active_size = self._allocated = os.fstat(self._fd).st_size
        # _lock guards the queue and counters; _write_lock is held for a whole
        # round (write + fsync) or a rollover, so the file sees records in order.
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._write_lock = threading.Lock()
        self._next_seq = next_sequence
        self._written_seq = next_sequence - 1
        self._durable_seq = next_sequence - 1
        self._pending: list[bytes] = []
        # Durable writers not yet woken (see _pass_baton), and locks whose
        # writer stopped waiting.
        self._to_wake: collections.deque[threading.Lock] = collections.deque()
        self._abandoned: set[threading.Lock] = set()
        self._waiters: list[tuple[int, _Waiter]] = []
        # batch mode: submit()'s futures, resolved once their record is written
        self._unwritten: list[tuple[int, Future[int]]] = []
        self._unsynced_since: float | None = None
        self._fatal: Exception | None = None
        self._closed = False
        self._flusher_idle = False
        # called (from whichever thread ran the round) when acknowledged_sequence moves
        # or the WAL turns fatal; see watch()
        self._watchers: list[Callable[[], None]] = []
        committer = self._run_group_commits if self._sync else self._run_batch_commits
        self._flusher = threading.Thread(target=committer, name="wal-flusher", daemon=True)
        self._flusher.start()

    # ----------------------------------------------------------------- writing

    def submit(self, operation: str, data: Any) -> tuple[int, Future[int]]:
        """Assign the next sequence and queue the record; never waits for the disk.

        Never takes the write lock either: the flusher thread writes the
        record. The future resolves to the sequence once the record is
        fsynced, or fails with :class:`WALFatalError`.
        """
        return self._submit(pack_payload(operation, data), durable=True)

    def submit_acknowledged(self, operation: str, data: Any) -> tuple[int, Future[int]]:
        """Like :meth:`submit`, resolving when :meth:`append` would have returned.

        That is once the record is fsynced (sync) or written (batch): the
        non-blocking form of ``append``, for an event loop.
        """
        return self._submit(pack_payload(operation, data), durable=self._sync)

    def submit_payload(self, payload: Payload) -> tuple[int, Future[int]]:
        """:meth:`submit_acknowledged` of a payload :func:`pack_payload` already packed."""
        return self._submit(payload, durable=self._sync)

    def enqueue_payload(self, payload: Payload) -> int:
        """Queue a packed record and return its sequence; nothing per record says when it lands.

        For a caller that settles many writes at once: it learns that
        :attr:`acknowledged_sequence` moved (or that the WAL failed) from a
        :meth:`watch` callback, once per round rather than once per record.
        """
        seq = self._enqueue(payload, None)
        self._kick()
        return seq

    def watch(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback()`` whenever :attr:`acknowledged_sequence` moves or the WAL fails.

        It runs on the thread that wrote the round (usually the flusher),
        after the new sequence is visible, so it must be quick and
        thread-safe (e.g. ``loop.call_soon_threadsafe``). Returns a function
        that stops the calls.
        """
        self._watchers.append(callback)
        return lambda: self._watchers.remove(callback)

    def _notify_watchers(self) -> None:
        for callback in list(self._watchers):
            callback()

    def _submit(self, payload: Payload, *, durable: bool) -> tuple[int, Future[int]]:
        future: Future[int] = Future()
        future.set_running_or_notify_cancel()  # not cancellable: the record is queued
        seq = self._enqueue(payload, future if durable else None, None if durable else future)
        self._kick()
        return seq, future

    def append(self, operation: str, data: Any) -> int:
        """Append one entry and return its sequence.

        sync: returns once the entry is fsynced (concurrent writers share
        one fsync). batch: returns once it is written; a background flusher
        fsyncs every ``batch_entries`` entries or ``batch_interval`` seconds.
        Raises :class:`WALFatalError` if the entry cannot be made durable,
        :class:`VaultClosed` after :meth:`close`, :class:`InvalidArgument`
        for data MessagePack cannot encode.
        """
        payload = pack_payload(operation, data)
        if not self._sync:
            seq = self._enqueue(payload, None)
            self._write_through(seq)
            return seq
        waiter = threading.Lock()
        waiter.acquire()
        seq = self._enqueue(payload, waiter)
        led = False
        if self._write_lock.acquire(blocking=False):
            try:  # no round running: lead one ourselves, no thread hand-off
                led = self._round(own=waiter)
            finally:
                self._write_lock.release()
        self._kick()
        if not led:  # our own round did not cover us: a round will release the waiter
            self._await(waiter)
        if self._durable_seq < seq:
            raise self._fatal_error()
        return seq

    def flush(self) -> None:
        """Write and fsync everything appended so far; raise if that fails."""
        self._check_open()
        with self._write_lock:
            self._round()
        if self._fatal is not None:
            raise self._fatal_error()

    @property
    def last_sequence(self) -> int:
        """The last sequence handed out (written, or queued to be)."""
        return self._next_seq - 1

    @property
    def durable_sequence(self) -> int:
        """The last sequence known to be on stable storage."""
        return self._durable_seq

    @property
    def acknowledged_sequence(self) -> int:
        """The last sequence :meth:`append` would have returned for: fsynced (sync), written (batch)."""
        return self._durable_seq if self._sync else self._written_seq

    @property
    def failure(self) -> WALFatalError | None:
        """Why nothing more can be acknowledged, once a write or fsync failed; else None."""
        return None if self._fatal is None else self._fatal_error()

    @property
    def durability(self) -> _Durability:
        """``"sync"`` or ``"batch"``, as opened."""
        return "sync" if self._sync else "batch"

    @property
    def directory(self) -> Path:
        """The WAL directory (``VAULT/wal``)."""
        return self._directory

    # ----------------------------------------------------------------- reading

    def replay(self, from_sequence: int = 1) -> Iterator[WALEntry]:
        """Entries with sequence >= ``from_sequence``, in order, across segments.

        Sees what was written when it starts; raises :class:`WALCorruption`
        if a segment was damaged since open. Do not run it concurrently
        with :meth:`truncate_through`.
        """
        limit = self._written_seq
        with self._lock:
            segments = list(self._segments)
        for index, (first, path) in enumerate(segments):
            following = segments[index + 1][0] if index + 1 < len(segments) else None
            if following is not None and following <= from_sequence:
                continue  # every entry in this segment is older
            if first > limit:
                return
            for item in walk_segment(path.read_bytes(), first):
                if isinstance(item, Problem):
                    raise WALCorruption(str(path), item.offset, item.reason)
                if item.sequence >= from_sequence:
                    yield self._opened(path, item)
                if item.sequence >= limit:
                    return  # what follows is being written, or preallocated zeros

    def _opened(self, path: Path, entry: WALEntry | SealedEntry) -> WALEntry:
        """``entry`` readable: opened if sealed; a broken seal is corruption, never skipped."""
        if isinstance(entry, WALEntry):
            return entry
        try:
            return open_sealed(entry, self._keyring, f"WAL record {entry.sequence} in {path}")
        except SealBroken as broken:
            raise WALCorruption(str(path), entry.offset, f"sealed record {entry.sequence}: "
                                f"{broken}; recovery stops here rather than skip it") from None

    @property
    def keyring(self) -> Keyring | None:
        """The keys this WAL seals and opens records with (None: records are plain)."""
        return self._keyring

    def segments(self) -> list[Path]:
        """The segment files, oldest first; the last one is active."""
        with self._lock:
            return [path for _, path in self._segments]

    # ------------------------------------------------------------- maintenance

    def truncate_through(self, sequence: int) -> int:
        """Delete the segments whose every entry is <= ``sequence``; return how many.

        The active segment is never deleted. Call it after a checkpoint
        that covers ``sequence`` is durable.
        """
        self._check_open()
        removed = 0
        with self._write_lock:
            try:
                while len(self._segments) > 1 and self._segments[1][0] - 1 <= sequence:
                    path = self._segments[0][1]
                    self._layer.unlink(path)
                    with self._lock:
                        del self._segments[0]
                    removed += 1
            except OSError as exc:
                raise VaultError(f"could not delete WAL segment {path}: {exc}") from exc
            finally:
                if removed:  # make the deletions durable, even those before a failure
                    self._layer.fsync_directory(self._directory)
        return removed

    def close(self) -> None:
        """Flush, stop the flusher and release the file; later appends raise VaultClosed.

        Idempotent. Raises :class:`WALFatalError` if entries that were
        written could not be made durable.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._wake.notify_all()
        self._flusher.join()
        try:
            with self._write_lock:
                self._round()
                if self._fd >= 0:
                    self._release_active()
        finally:
            os.close(self._lock_fd)  # another process may open the WAL now
        if self._fatal is not None and self._durable_seq < self._next_seq - 1:
            raise self._fatal_error()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ---------------------------------------------------------------- internals

    def _enqueue(
        self, payload: Payload, waiter: _Waiter, written: Future[int] | None = None
    ) -> int:
        with self._lock:
            if self._closed:
                raise VaultClosed(f"the WAL in {self._directory} is closed; open it again")
            if self._fatal is not None:
                raise self._fatal_error()
            seq = self._next_seq
            # Encoded under the lock because the sequence is inside the record,
            # and records must reach the file in sequence order; the sequence is
            # spent only once encoding (sealing) succeeded, so a failure leaves no gap.
            self._pending.append(self._encode(seq, payload))
            self._next_seq = seq + 1
            if waiter is not None:
                self._waiters.append((seq, waiter))
            if written is not None:
                self._unwritten.append((seq, written))
        return seq

    def _encode(self, seq: int, payload: Payload) -> bytes:
        """The record for ``payload`` at ``seq``: sealed when the WAL has a keyring."""
        if self._keyring is None or self._nonces is None:
            return encode_record(seq, time.time(), payload)
        return encode_sealed_record(seq, time.time(), payload, self._keyring, self._nonces)

    def _await(self, waiter: threading.Lock) -> None:
        """Sleep until a round (or _fail) releases ``waiter``, then wake the next writer."""
        try:
            waiter.acquire()
        except BaseException:  # KeyboardInterrupt: keep the chain of wake-ups going
            if waiter.acquire(blocking=False):
                self._pass_baton()  # we were woken after all: wake the next one
            else:
                self._abandoned.add(waiter)  # _pass_baton will skip it
            raise
        self._pass_baton()

    def _pass_baton(self) -> None:
        """Release the next durable writer in line.

        A round wakes only the first of its writers; each writer, as it
        wakes, wakes the next. Releasing all of them at once makes them
        fight for the GIL while the round still holds it, costing each an
        extra sleep and wake-up; with 64 writers that measured markedly
        slower. The chain cannot stall: every woken writer passes it on
        before it leaves :meth:`append`.
        """
        while self._to_wake:
            try:
                lock = self._to_wake.popleft()
            except IndexError:  # another writer took the last one
                return
            if self._abandoned and lock in self._abandoned:
                self._abandoned.discard(lock)
                continue
            lock.release()
            return

    def _kick(self) -> None:
        """Wake the flusher if records are queued and it sleeps."""
        if self._flusher_idle:  # racy read is fine: the flusher rechecks under the lock
            with self._lock:
                if self._pending and self._flusher_idle:
                    self._wake.notify()

    def _write_through(self, seq: int) -> None:
        """Batch mode: write queued records (no fsync) and tell the flusher."""
        with self._write_lock:
            self._drain()
        if self._written_seq < seq:
            raise self._fatal_error()
        if self._note_unsynced():
            with self._lock:
                self._wake.notify()

    def _note_unsynced(self) -> bool:
        """Batch mode, after a write: start the interval clock; True if the flusher is due."""
        with self._lock:
            if self._unsynced_since is None:
                self._unsynced_since = time.monotonic()
                return True  # the flusher must set its timer
            return self._next_seq - 1 - self._durable_seq >= self._batch_entries

    def _round(self, own: _Waiter = None) -> bool:
        """Write everything queued and fsync it; the caller holds the write lock.

        ``own`` is the calling writer's waiter: if this round makes it
        durable it is not woken, and the result is True.
        """
        if not self._drain():
            return False
        target = self._written_seq
        if target <= self._durable_seq:
            return False
        try:
            self._layer.fdatasync(self._fd)  # records overwrite preallocated zeros
        except Exception as exc:  # noqa: BLE001 - see _fail
            self._fail(exc)
            return False
        return self._mark_durable(target, own)

    def _drain(self) -> bool:
        """Write the queued records; False if the WAL is (now) fatal."""
        with self._lock:
            if self._fatal is not None:
                return False
            batch, self._pending = self._pending, []
        if not batch:
            return True
        try:
            self._write(batch)
        except Exception as exc:  # noqa: BLE001 - see _fail
            self._fail(exc)
            return False
        if self._unwritten:
            self._resolve_written()
        if not self._sync and self._watchers:
            self._notify_watchers()
        return True

    def _resolve_written(self) -> None:
        """Batch mode: resolve the futures of submitted records now written."""
        with self._lock:
            done = [w for w in self._unwritten if w[0] <= self._written_seq]
            self._unwritten = [w for w in self._unwritten if w[0] > self._written_seq]
        for seq, future in done:
            future.set_result(seq)

    def _write(self, batch: list[bytes]) -> None:
        total = sum(map(len, batch))
        if self._active_size + total <= self._segment_size:
            self._write_chunk(b"".join(batch), len(batch), total)
            return
        chunk: list[bytes] = []
        size = 0
        for record in batch:
            if self._active_size + size > 0 and self._active_size + size + len(record) > (
                self._segment_size
            ):
                self._write_chunk(b"".join(chunk), len(chunk), size)
                self._rollover(self._written_seq + 1)
                chunk, size = [], 0
            chunk.append(record)
            size += len(record)
        self._write_chunk(b"".join(chunk), len(chunk), size)

    def _write_chunk(self, data: bytes, count: int, size: int) -> None:
        if data:
            self._reserve(self._active_size + size)
            pwrite_all(self._layer, self._fd, data, self._active_size)
        self._active_size += size
        self._written_seq += count

    def _reserve(self, end: int) -> None:
        """Make the active segment at least ``end`` bytes, growing it with zeros."""
        if end <= self._allocated:
            return
        target = max(end, min(self._allocated + PREALLOCATE_STEP, self._segment_size))
        # Real zeros, not fallocate: a preallocated but unwritten extent is
        # converted on first write, which is a metadata change again. The
        # round's fdatasync makes the new size durable with the records.
        pwrite_all(self._layer, self._fd, bytes(target - self._allocated), self._allocated)
        self._allocated = target

    def _rollover(self, first_sequence: int) -> None:
        """Seal the active segment and start one named ``first_sequence``."""
        self._seal()
        fd, self._fd = self._fd, -1
        self._layer.close(fd)
        path = self._directory / segment_name(first_sequence)
        self._fd = self._layer.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        self._layer.fsync_directory(self._directory)  # the new name must survive a crash
        self._active_size = self._allocated = 0
        with self._lock:
            self._segments.append((first_sequence, path))

    def _seal(self) -> None:
        """Trim the active segment to its records and sync it whole."""
        # The old segment must be complete on disk before a newer one exists:
        # a torn record (or padding) is only forgiven at the end of the *last*.
        if self._allocated > self._active_size:
            self._layer.ftruncate(self._fd, self._active_size)
            self._allocated = self._active_size
        self._layer.fsync(self._fd)

    def _release_active(self) -> None:
        """At close: trim the padding if the WAL is healthy, then close the file."""
        fd = self._fd
        try:
            if self._fatal is None:
                self._seal()
        except OSError:
            # Every acknowledged record was synced by a round; this only
            # trims zeros, which the next open trims anyway. Never retried.
            pass
        finally:
            self._fd = -1
            self._layer.close(fd)

    def _mark_durable(self, target: int, own: _Waiter = None) -> bool:
        with self._lock:
            self._durable_seq = target
            self._unsynced_since = None if self._written_seq == target else time.monotonic()
            if self._waiters and self._waiters[-1][0] > target:
                done = [w for w in self._waiters if w[0] <= target]
                self._waiters = [w for w in self._waiters if w[0] > target]
            else:
                done, self._waiters = self._waiters, []
        locks, found_own = [], False
        for seq, waiter in done:
            if isinstance(waiter, Future):
                waiter.set_result(seq)
            elif waiter is own:
                found_own = True
            else:
                locks.append(waiter)
        if locks:
            self._to_wake.extend(locks)
            self._pass_baton()
        if self._watchers:
            self._notify_watchers()
        return found_own

    def _fail(self, exc: Exception) -> None:
        """Make the WAL fatal: fail every waiter, drop the queue, refuse the rest.

        Normally ``exc`` is the OSError of a write or sync. Anything else
        that stops a round half-way (MemoryError, a bug) is made fatal too:
        the round's records were taken off the queue, and failing their
        writers is the only answer that never acknowledges them.
        """
        with self._lock:
            if self._fatal is None:
                self._fatal = exc
            waiters, self._waiters, self._pending = self._waiters, [], []
            waiters += self._unwritten
            self._unwritten = []
        for _, waiter in waiters:
            if isinstance(waiter, Future):
                waiter.set_exception(self._fatal_error())
            else:
                waiter.release()  # the writer sees durable < its sequence and raises
        self._notify_watchers()

    def _fatal_error(self) -> WALFatalError:
        cause = self._fatal
        error = WALFatalError(
            f"WAL write or fsync failed in {self._directory}: {cause}; entries after "
            f"sequence {self._durable_seq} are not durable and every further append is "
            "refused; reopen the WAL to recover what is on disk"
        )
        error.__cause__ = cause
        return error

    def _check_open(self) -> None:
        if self._closed:
            raise VaultClosed(f"the WAL in {self._directory} is closed; open it again")

    def _run_group_commits(self) -> None:
        """The sync committer: a round (write + fdatasync) whenever records are queued."""
        while self._await_work():
            with self._write_lock:
                self._round()

    def _run_batch_commits(self) -> None:
        """The batch committer: write what submit() queued; fsync when a batch is due."""
        while self._await_work():
            with self._write_lock:
                self._drain()
                if self._written_seq > self._durable_seq:
                    self._note_unsynced()
                with self._lock:
                    due = self._sync_due()
                if due:
                    self._round()

    def _await_work(self) -> bool:
        """Sleep until the committer has work; False once the WAL is closed."""
        with self._lock:
            while not self._due():
                if self._closed:
                    return False
                self._flusher_idle = True
                self._wake.wait(self._wait_timeout())
                self._flusher_idle = False
        return True

    def _due(self) -> bool:
        """Is there work for the committer now? (caller holds the lock)"""
        if self._fatal is not None:
            return False
        return bool(self._pending) or (not self._sync and self._sync_due())

    def _sync_due(self) -> bool:
        """Batch mode: is an fsync due (count or age)? (caller holds the lock)"""
        if self._fatal is not None:
            return False
        if self._next_seq - 1 - self._durable_seq >= self._batch_entries:
            return True
        since = self._unsynced_since
        return since is not None and time.monotonic() - since >= self._batch_interval

    def _wait_timeout(self) -> float | None:
        since = self._unsynced_since
        if self._sync or since is None or self._fatal is not None:
            return None  # nothing will come due until notified (a fatal WAL: never)
        return max(0.0, since + self._batch_interval - time.monotonic())


# ------------------------------------------------------------------ recovery


def _check_options(
    durability: str, segment_size: int, batch_entries: int, batch_interval: float, start: int
) -> None:
    if durability not in ("sync", "batch"):
        raise InvalidArgument(f"durability must be 'sync' or 'batch', got {durability!r}")
    if segment_size <= 0 or batch_entries <= 0 or batch_interval <= 0:
        raise InvalidArgument(
            "segment_size, batch_entries and batch_interval must be positive, got "
            f"{segment_size}, {batch_entries}, {batch_interval}"
        )
    if start < 1:
        raise InvalidArgument(f"start_sequence must be >= 1, got {start}")


def _ensure_directory(directory: Path, layer: FileLayer) -> None:
    if directory.is_dir():
        return
    directory.mkdir(parents=True, exist_ok=True)
    layer.fsync_directory(directory.parent)  # make the new directory's name durable


def _lock_directory(directory: Path) -> int:
    """Take the single-writer lock on ``directory``; return the descriptor holding it.

    Two writers would interleave records under the same sequences. The
    lock is an flock on the directory itself (no extra file in the
    layout); the kernel drops it when the holder dies, even by kill -9.
    """
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise VaultError(
            f"the WAL in {directory} is already open for writing (by another process, or "
            "another WAL object in this one); close that one first, or use scan() to read"
        ) from None
    except BaseException:
        os.close(fd)
        raise
    return fd


def segment_files(directory: Path) -> list[tuple[int, Path]]:
    """(first sequence, path) of every segment in a WAL directory, for read-only walks."""
    return _list_segments(directory)


def _list_segments(directory: Path) -> list[tuple[int, Path]]:
    """(first sequence, path) of every segment file, in sequence order."""
    if not directory.is_dir():
        return []
    found = []
    for path in directory.iterdir():
        match = _NAME.match(path.name)
        if match and path.is_file():
            found.append((int(match.group(1)), path))
    return sorted(found)


def _recover(
    directory: Path, layer: FileLayer, start_sequence: int, keyring: Keyring | None
) -> tuple[list[tuple[int, Path]], int, TornTail | None]:
    """Verify every segment, cut a torn tail; return segments, next sequence, tail."""
    segments = _list_segments(directory)
    next_seq: int | None = None
    torn: TornTail | None = None
    needed: dict[int, tuple[int, Path]] = {}  # key id -> first record replay would open
    for index, (first, path) in enumerate(segments):
        if next_seq is not None and first != next_seq:
            raise WALCorruption(str(path), 0, _gap_reason(first, next_seq - 1))
        last, torn = _verify_segment(path, first, is_last=index == len(segments) - 1,
                                     keys_from=(start_sequence, needed))
        next_seq = last + 1
    # Before anything is cut: a key we lack is the operator's to supply, not damage.
    for key_id, (sequence, path) in needed.items():
        if keyring is None or key_id not in keyring.ids:
            raise missing_key(key_id, f"WAL record {sequence} in {path}", keyring)
    if torn is not None:
        _cut_tail(layer, torn)
        if torn.reason == PADDING_REASON:
            torn = None  # our own preallocated zeros, not a torn write
    if next_seq is None or next_seq < start_sequence:
        # Empty log, or one a checkpoint made obsolete: start at start_sequence.
        for _, path in segments:
            layer.unlink(path)
        path = directory / segment_name(start_sequence)
        layer.close(layer.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL))
        layer.fsync_directory(directory)
        return [(start_sequence, path)], start_sequence, torn
    return segments, next_seq, torn


def _verify_segment(
    path: Path, first: int, *, is_last: bool, keys_from: tuple[int, dict[int, tuple[int, Path]]]
) -> tuple[int, TornTail | None]:
    """The last sequence in a segment, and its torn tail if it is the last segment.

    ``keys_from`` is (sequence, found): the key id of every sealed record
    at or after that sequence is noted in ``found`` with its first record.
    """
    buf = path.read_bytes()
    last = first - 1
    start, found = keys_from
    for item in walk_segment(buf, first):
        if not isinstance(item, Problem):
            last = item.sequence
            if isinstance(item, SealedEntry) and item.sequence >= start:
                found.setdefault(item.key_id, (item.sequence, path))
        elif is_last and item.at_tail:
            return last, _tail(path, buf, item)
        else:
            raise WALCorruption(str(path), item.offset, item.reason)
    return last, None


def _tail(path: Path, buf: bytes, problem: Problem) -> TornTail:
    """What to cut after the last good record; zeros only are preallocation."""
    size = len(buf) - problem.offset
    padding = buf.count(0, problem.offset) == size
    return TornTail(path, problem.offset, size, PADDING_REASON if padding else problem.reason)


def _cut_tail(layer: FileLayer, torn: TornTail) -> None:
    """Truncate a torn tail and make the new length durable."""
    fd = layer.open(torn.path, os.O_WRONLY)
    try:
        layer.ftruncate(fd, torn.offset)
        layer.fsync(fd)
    finally:
        layer.close(fd)


def _gap_reason(first: int, previous_last: int) -> str:
    return (
        f"segment starts at sequence {first} but the previous one ends at {previous_last}; "
        f"expected {previous_last + 1}"
    )
