"""The vault facade: one durable home for an agent's memory.

::

    VAULT/
      wal/<first sequence, 20 digits>.wal      every acknowledged write, in order
      checkpoints/<uuid>.ockpt                  full snapshots (newest `keep` kept)
      catalog.sqlite                            versions, experiments, feedback, events
      quarantine/<id>/                          canaries' writes not (yet) applied

    append(op, data) ──► WAL ──fsync──► sequence returned (sync mode)
    checkpoint(state) ──► flush WAL ─► write .ockpt (no WAL lock held) ─► truncate WAL
    recover() ──► newest checkpoint that verifies + every WAL entry after it

With a keyring (``PROJECT_O_VAULT_KEY`` or a key file, see
:mod:`project_o.vault.sealing`) WAL records and checkpoints are sealed on
write and opened on read, here, in the one process that holds the key.

State is always *last valid checkpoint + WAL replay*. The WAL is only
truncated through the **oldest** checkpoint still kept, so if the newest
checkpoint rots on disk, recovery falls back to the previous one and a
longer replay, and nothing acknowledged is lost.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

from project_o.errors import InvalidArgument, VaultClosed, VaultError, WALFatalError
from project_o.vault.catalog import Catalog
from project_o.vault.checkpoint import CheckpointInfo, CheckpointStore
from project_o.vault.quarantine import Quarantine
from project_o.vault.sealing import Keyring
from project_o.vault.wal import WAL, WALEntry
from project_o.vault.wal_record import Payload, pack_payload

__all__ = ["Durability", "RestorePoint", "Vault"]

_log = logging.getLogger(__name__)

Durability = Literal["sync", "batch"]

#: checkpoints kept on disk; two means one bad checkpoint never costs data
DEFAULT_CHECKPOINTS_KEPT = 2


@dataclass(frozen=True)
class RestorePoint:
    """What recovery starts from: a checkpoint's payload and the WAL after it."""

    state: dict[str, Any]
    entries: list[WALEntry] = field(default_factory=list)
    checkpoint: CheckpointInfo | None = None

    @property
    def last_sequence(self) -> int:
        """The last sequence this restore point covers (0 for an empty vault)."""
        if self.entries:
            return self.entries[-1].sequence
        return self.checkpoint.last_sequence if self.checkpoint else 0


class Vault:
    """Durable storage for one agent: WAL + checkpoints + catalog.

    Thread-safe. From asyncio use :meth:`append_async` and
    :meth:`checkpoint_async`, which never block the loop on an fsync.
    """

    def __init__(self, path: Path, wal: WAL, checkpoints: CheckpointStore) -> None:
        self.path = path
        self.wal = wal
        self.checkpoints = checkpoints
        #: canaries' writes, kept apart until promotion (or applied by hand)
        self.quarantine = Quarantine(path / "quarantine", keyring=wal.keyring)
        self._catalog: Catalog | None = None
        self._checkpoint_lock = threading.Lock()
        self._background = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="vault-checkpoint"
        )
        self._closed = False

    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        durability: Durability = "sync",
        segment_size: int | None = None,
        batch_entries: int = 100,
        batch_interval: float = 1.0,
        checkpoints_kept: int = DEFAULT_CHECKPOINTS_KEPT,
        keyring: Keyring | None = None,
    ) -> Vault:
        """Open (creating if needed) the vault at ``path``.

        A torn record at the tail of the WAL is repaired; corruption
        anywhere else raises :class:`~project_o.errors.WALCorruption`.
        ``keyring`` (:func:`~project_o.vault.sealing.load_keyring`): seal
        everything written from now on with its current key; a sealed
        record or checkpoint recovery needs whose key it lacks raises
        :class:`~project_o.errors.VaultKeyError`, and nothing is discarded.
        """
        if durability not in ("sync", "batch"):
            raise InvalidArgument(f"durability must be 'sync' or 'batch', got {durability!r}")
        root = Path(path)
        _private_directory(root)
        checkpoints = CheckpointStore(root / "checkpoints", keep=checkpoints_kept,
                                      keyring=keyring)
        newest = checkpoints.latest_valid()
        start = newest[0].last_sequence + 1 if newest else 1
        options: dict[str, Any] = {}
        if segment_size is not None:
            options["segment_size"] = segment_size
        wal = WAL.open(
            root / "wal", durability=durability, batch_entries=batch_entries,
            batch_interval=batch_interval, start_sequence=start, keyring=keyring, **options,
        )
        return cls(root, wal, checkpoints)

    # -- writes ---------------------------------------------------------

    def append(self, operation: str, data: Any) -> int:
        """Journal one write; return its sequence (durable on return in sync mode)."""
        self._check_open()
        return self.wal.append(operation, data)

    async def append_async(self, operation: str, data: Any) -> int:
        """Like :meth:`append`, awaiting the WAL's committer thread instead of blocking.

        The event loop never takes the WAL's write lock: the record is written
        (and, in sync mode, fsynced) by the WAL's flusher thread.
        """
        return await self.append_payload_async(pack_payload(operation, data))

    def enqueue_payload(self, payload: Payload) -> int:
        """Queue a packed write and return its sequence; :meth:`watch` says when it is acknowledged.

        For a caller that settles writes in batches (the journal): one
        wake-up per group commit instead of a future per write.
        """
        self._check_open()
        return self.wal.enqueue_payload(payload)

    def watch(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback()`` (from the WAL's thread) when :attr:`acknowledged_sequence` moves.

        Also when the WAL fails (:attr:`failure`). Returns the function that
        stops the calls. See :meth:`WAL.watch`.
        """
        return self.wal.watch(callback)

    @property
    def acknowledged_sequence(self) -> int:
        """The last write acknowledged: fsynced (sync durability) or written (batch)."""
        return self.wal.acknowledged_sequence

    @property
    def failure(self) -> WALFatalError | None:
        """Why no write can be acknowledged any more (a write or fsync failed); else None."""
        return self.wal.failure

    async def append_payload_async(self, payload: Payload) -> int:
        """:meth:`append_async` of ``(operation, data)`` already packed by :func:`pack_payload`."""
        self._check_open()
        sequence, acknowledged = self.wal.submit_payload(payload)
        await asyncio.wrap_future(acknowledged)
        return sequence

    def checkpoint(self, state: dict[str, Any], *, last_sequence: int | None = None) -> CheckpointInfo:
        """Write a checkpoint of ``state`` covering the WAL through ``last_sequence``.

        ``last_sequence`` defaults to the last appended sequence; pass it
        when ``state`` is a snapshot taken at an earlier point. Appends are
        not blocked while the file is written.
        """
        self._check_open()
        covered = self.wal.last_sequence if last_sequence is None else last_sequence
        if covered > self.wal.last_sequence:
            raise InvalidArgument(
                f"checkpoint claims sequence {covered} but the WAL ends at "
                f"{self.wal.last_sequence}"
            )
        with self._checkpoint_lock:
            # The checkpoint must never cover a write the WAL could still lose:
            # after a crash, replay starts after `covered`, so it must be durable.
            self.wal.flush()
            info = self.checkpoints.write(state, covered)
            oldest = self.checkpoints.oldest_retained_sequence()
            if oldest is not None:
                self.wal.truncate_through(oldest)
        return info

    def checkpoint_background(
        self, state: dict[str, Any], *, last_sequence: int | None = None
    ) -> concurrent.futures.Future[CheckpointInfo]:
        """Write a checkpoint on the vault's background thread."""
        self._check_open()
        covered = self.wal.last_sequence if last_sequence is None else last_sequence
        return self._background.submit(self.checkpoint, state, last_sequence=covered)

    async def checkpoint_async(
        self, state: dict[str, Any], *, last_sequence: int | None = None
    ) -> CheckpointInfo:
        """Await :meth:`checkpoint_background` without blocking the loop."""
        return await asyncio.wrap_future(self.checkpoint_background(state, last_sequence=last_sequence))

    # -- reads ----------------------------------------------------------

    def recover(self) -> RestorePoint:
        """The newest checkpoint that verifies, plus every WAL entry after it."""
        self._check_open()
        newest = self.checkpoints.latest_valid()
        info, state = newest if newest else (None, {})
        after = info.last_sequence if info else 0
        entries = list(self.wal.replay(after + 1))
        if entries and entries[0].sequence != after + 1:
            raise VaultError(
                f"the WAL starts at sequence {entries[0].sequence} but the newest valid "
                f"checkpoint covers only through {after}: entries {after + 1}–"
                f"{entries[0].sequence - 1} are missing; run `project-o vault verify`"
            )
        return RestorePoint(state=dict(state), entries=entries, checkpoint=info)

    @property
    def last_sequence(self) -> int:
        """The last sequence appended."""
        return self.wal.last_sequence

    @property
    def catalog(self) -> Catalog:
        """The SQLite catalog (opened on first use)."""
        self._check_open()
        if self._catalog is None:
            self._catalog = Catalog.open(self.path / "catalog.sqlite")
        return self._catalog

    # -- lifecycle ------------------------------------------------------

    def close(self) -> None:
        """Flush and close everything; idempotent."""
        if self._closed:
            return
        self._closed = True
        self._background.shutdown(wait=True)
        self.wal.close()
        if self._catalog is not None:
            self._catalog.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise VaultClosed(f"vault {self.path} is closed; open it again with Vault.open()")


def _private_directory(root: Path) -> None:
    """Create ``root`` as 0700, or tighten it to 0700: it holds the memory and the token.

    The files inside are made 0600 too, but a directory others can enter
    would still show them their names, sizes and times.
    """
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    mode = root.stat().st_mode & 0o777
    if mode != 0o700:
        _log.warning("vault %s had mode %o; made it 0700 (only its owner may enter)", root, mode)
        root.chmod(0o700)
