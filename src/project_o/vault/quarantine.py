"""Overlays: a canary's acknowledged writes, kept apart until its version is promoted.

A canary serves real users, so every write it makes is acknowledged only
once durable. But the canary is a version on trial: its writes become the
memory the main serves only if it is promoted. Until then they live in an
overlay of their own; a rejected or rolled-back canary leaves its overlay
*quarantined* — nothing acknowledged is destroyed, nothing unproven is
applied — until someone applies it by hand (``project-o vault quarantine
apply ID``)::

    VAULT/quarantine/<id>/
        overlay.json   {id, version, experiment_id, base_sequence, created_ns,
                        status, reason, changed_ns}          (replaced atomically)
        wal/           the writes, in the WAL's own record format, one record
                       ("overlay_write", {operation, data, requests}) each,
                       numbered on from base_sequence + 1; sealed, as the
                       agent's WAL is, when the vault has a keyring

    status   open ──► promoted      applied to the agent's WAL at promotion
               └────► quarantined   rejected, rolled back, or the supervisor
                          │         died mid-canary (settled at the next start)
                          └──► applied   by an explicit command

``requests`` names the requests in flight on the canary when it made the
write: the one request, unless the agent serves several at once.

Applying appends each write to the agent's WAL, in the order the canary
made it, after everything already there: for a key both wrote, the
canary's write wins. A crash mid-apply leaves the overlay quarantined;
applying it again writes the same values again, so the memory ends the same.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Final, Literal

import msgpack

from project_o.errors import InvalidArgument, OverlayNotApplicable, UnknownOverlay, VaultError
from project_o.vault.atomic import write_atomic
from project_o.vault.sealing import Keyring, SealBroken
from project_o.vault.wal import WAL, segment_files
from project_o.vault.wal_record import (
    Payload,
    Problem,
    SealedEntry,
    WALEntry,
    checked_payload,
    open_sealed,
    pack_payload,
    walk_segment,
)

__all__ = [
    "OVERLAY_WRITE",
    "Overlay",
    "OverlayInfo",
    "OverlayStatus",
    "OverlayWrite",
    "Quarantine",
    "overlay_payload",
]

#: the operation of every record in an overlay's WAL
OVERLAY_WRITE: Final = "overlay_write"

OverlayStatus = Literal["open", "promoted", "quarantined", "applied"]

_PACKED_OVERLAY_WRITE: Final[bytes] = msgpack.packb(OVERLAY_WRITE)
#: a map of three entries, and its keys, as msgpack.packb writes them
_RECORD_HEAD: Final = b"\x83"
_OPERATION_KEY: Final[bytes] = msgpack.packb("operation")
_DATA_KEY: Final[bytes] = msgpack.packb("data")
_REQUESTS_KEY: Final[bytes] = msgpack.packb("requests")

_MANIFEST: Final = "overlay.json"
#: writes an apply queues before it waits for the oldest to be durable
_APPLY_WINDOW: Final = 1024

#: the agent's WAL's ``submit_acknowledged``: (sequence, resolved once durable)
Submit = Callable[[str, Any], tuple[int, Future[int]]]
_ID_LENGTH: Final = 12


@dataclass(frozen=True)
class OverlayInfo:
    """What ``overlay.json`` holds about one overlay."""

    id: str
    version: str
    experiment_id: str
    base_sequence: int
    created_ns: int
    status: OverlayStatus = "open"
    reason: str = ""
    changed_ns: int = 0
    writes: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape the CLI and ``GET /v1/quarantine`` show."""
        return asdict(self)


@dataclass(frozen=True)
class OverlayWrite:
    """One write a canary made: its position, the memory operation and its requests."""

    sequence: int
    operation: str
    data: Any
    requests: list[str]

    def to_dict(self) -> dict[str, Any]:
        """Plain values (bytes in ``data`` stay bytes: MessagePack, not JSON, is the wire)."""
        return asdict(self)

    def to_json(self) -> dict[str, Any]:
        """What the CLI and ``GET /v1/quarantine/{id}`` show: bytes as ``{"base64": ...}``."""
        return {**self.to_dict(), "data": _jsonable(self.data)}


class Overlay:
    """An open overlay: the canary's writes are appended here, durable on return."""

    def __init__(self, directory: Path, info: OverlayInfo, wal: WAL) -> None:
        self.directory = directory
        self.info = info
        self._wal = wal

    async def append(self, operation: str, data: Any, requests: list[str]) -> int:
        """Durably record one write; its sequence (after the canary's restore point)."""
        return await self.append_payload(pack_payload(operation, data), requests)

    async def append_payload(self, payload: Payload, requests: list[str]) -> int:
        """:meth:`append` of a write :func:`~.wal_record.pack_payload` already packed."""
        sequence, durable = self._wal.submit_payload(overlay_payload(payload, requests))
        await asyncio.wrap_future(durable)
        return sequence

    @property
    def writes(self) -> int:
        """How many writes were appended so far."""
        return self._wal.last_sequence - self.info.base_sequence

    def settle(self, status: OverlayStatus, reason: str) -> OverlayInfo:
        """Close the overlay's WAL and record how the canary ended."""
        writes = self.writes
        self._wal.close()
        self.info = _write_manifest(self.directory, replace(
            self.info, status=status, reason=reason, writes=writes))
        return self.info

    def close(self) -> None:
        """Close the WAL (the status stays as it is: "open" is settled at the next start)."""
        self._wal.close()


class Quarantine:
    """The overlays of one vault, under ``VAULT/quarantine``."""

    def __init__(self, directory: Path, *, keyring: Keyring | None = None) -> None:
        """``keyring``: the vault's, so overlays are sealed at rest like its WAL."""
        self.directory = Path(directory)
        self.keyring = keyring

    def create(self, version: str, experiment_id: str, base_sequence: int) -> Overlay:
        """Start an overlay for a canary restored at ``base_sequence``."""
        if base_sequence < 0:
            raise InvalidArgument(f"base_sequence must be >= 0, got {base_sequence}")
        overlay_id = uuid.uuid4().hex[:_ID_LENGTH]
        directory = self.directory / overlay_id
        directory.mkdir(mode=0o700, parents=True)
        info = _write_manifest(directory, OverlayInfo(
            id=overlay_id, version=version, experiment_id=experiment_id,
            base_sequence=base_sequence, created_ns=time.time_ns()))
        wal = WAL.open(directory / "wal", start_sequence=base_sequence + 1,
                       keyring=self.keyring)
        return Overlay(directory, info, wal)

    def overlays(self) -> list[OverlayInfo]:
        """Every overlay, oldest first."""
        if not self.directory.is_dir():
            return []
        found = [self._read_info(path) for path in self.directory.iterdir()
                 if (path / _MANIFEST).is_file()]
        return sorted(found, key=lambda info: info.created_ns)

    def get(self, overlay_id: str) -> OverlayInfo:
        """One overlay's manifest; :class:`UnknownOverlay` if there is none."""
        return self._read_info(self._path(overlay_id))

    def writes(self, overlay_id: str) -> Iterator[OverlayWrite]:
        """The overlay's writes, in the order the canary made them (read-only; no lock)."""
        for entry in self._entries(overlay_id):
            if isinstance(entry, SealedEntry):
                entry = self._open(overlay_id, entry)
            yield _write(entry.sequence, entry.data)

    def _entries(self, overlay_id: str) -> Iterator[WALEntry | SealedEntry]:
        """The records of the overlay's WAL, checksummed but not opened (no key needed)."""
        segments = segment_files(self._path(overlay_id) / "wal")
        for index, (first, path) in enumerate(segments):
            for item in walk_segment(path.read_bytes(), first):
                if not isinstance(item, Problem):
                    yield item
                elif not (item.at_tail and index == len(segments) - 1):
                    raise VaultError(f"overlay {overlay_id}: {path.name} offset "
                                     f"{item.offset}: {item.reason}")
                # else a torn tail: that write was never acknowledged

    def _open(self, overlay_id: str, entry: SealedEntry) -> WALEntry:
        try:
            return open_sealed(entry, self.keyring, f"overlay {overlay_id} write {entry.sequence}")
        except SealBroken as broken:
            raise VaultError(f"overlay {overlay_id}: write {entry.sequence}: {broken}") from None

    def settle_open(self, reason: str) -> list[OverlayInfo]:
        """Quarantine overlays a previous supervisor left open (it died mid-canary).

        Their writes are counted, not opened: a start-up needs no key of an
        old overlay (one sealed with a rotated-out key waits, quarantined).
        """
        settled = []
        for info in self.overlays():
            if info.status == "open":
                writes = sum(1 for _ in self._entries(info.id))
                settled.append(_write_manifest(self._path(info.id), replace(
                    info, status="quarantined", reason=reason, writes=writes)))
        return settled

    def apply(self, overlay_id: str, submit: Submit, *,
              status: OverlayStatus = "applied", reason: str = "") -> OverlayInfo:
        """Append a quarantined overlay's writes through ``submit(operation, data)``.

        ``submit`` is the agent's WAL's ``submit_acknowledged``: the writes
        are queued together, so a few fsyncs cover them all (not one each),
        and the overlay gets ``status`` ("applied" by hand, "promoted" with
        its canary) once every one is durable.
        """
        info = self.get(overlay_id)
        if info.status != "quarantined":
            raise OverlayNotApplicable(
                f"overlay {overlay_id} is {info.status}; only a quarantined overlay can be "
                "applied")
        pending: collections.deque[Future[int]] = collections.deque()
        applied = 0
        for write in self.writes(overlay_id):
            pending.append(submit(write.operation, write.data)[1])
            applied += 1
            if len(pending) > _APPLY_WINDOW:  # bounds what waits in memory
                pending.popleft().result()
        for durable in pending:
            durable.result()
        return _write_manifest(self._path(overlay_id), replace(
            info, status=status, reason=reason or f"applied by hand ({applied} writes)"))

    def _path(self, overlay_id: str) -> Path:
        if not (isinstance(overlay_id, str) and overlay_id.isalnum()
                and len(overlay_id) <= 64):
            raise UnknownOverlay(f"{overlay_id!r} is not an overlay id")
        path = self.directory / overlay_id
        if not (path / _MANIFEST).is_file():
            raise UnknownOverlay(
                f"no overlay {overlay_id!r} in {self.directory}; `project-o vault quarantine` "
                "lists them")
        return path

    @staticmethod
    def _read_info(path: Path) -> OverlayInfo:
        try:
            raw = json.loads((path / _MANIFEST).read_text())
            return OverlayInfo(**raw)
        except (OSError, ValueError, TypeError) as exc:
            raise VaultError(f"overlay manifest {path / _MANIFEST} is unreadable: {exc}") from None


def overlay_payload(payload: Payload, requests: list[str]) -> Payload:
    """The overlay record of a packed write, without packing its data a second time.

    Byte for byte ``pack_payload(OVERLAY_WRITE, {"operation": ..., "data": ...,
    "requests": requests})``.
    """
    operation, data = payload
    try:
        packed_requests = msgpack.packb(requests)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidArgument(f"requests must be a list of str: {exc}") from None
    return checked_payload(_PACKED_OVERLAY_WRITE, b"".join((
        _RECORD_HEAD, _OPERATION_KEY, operation, _DATA_KEY, data, _REQUESTS_KEY,
        packed_requests)))


def _write(sequence: int, record: Any) -> OverlayWrite:
    if not isinstance(record, dict) or not isinstance(record.get("operation"), str):
        raise VaultError(f"overlay record {sequence} is not an overlay write")
    requests = record.get("requests")
    return OverlayWrite(sequence, record["operation"], record.get("data"),
                        [str(r) for r in requests] if isinstance(requests, list) else [])


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"base64": base64.b64encode(value).decode()}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def _write_manifest(directory: Path, info: OverlayInfo) -> OverlayInfo:
    info = replace(info, changed_ns=time.time_ns())
    write_atomic(directory / _MANIFEST, json.dumps(info.to_dict(), indent=1).encode())
    os.chmod(directory / _MANIFEST, 0o600)
    return info
