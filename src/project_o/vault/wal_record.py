"""WAL records: one entry's bytes, and walking the records of a segment.

A segment is a plain sequence of records: a u32 big-endian size, then
one MessagePack map with exactly the keys ``sequence``, ``timestamp``,
``operation``, ``data`` and ``checksum`` (the SHA-256 of
``msgpack.packb([sequence, timestamp, operation, data])``, in hex). The
byte layout is drawn in docs/design.md ("WAL segments").

MessagePack encodes an array or a map as a header byte followed by its
elements, concatenated. Encoding is therefore split in two so the WAL can
do the slow, sequence-independent part outside its lock:
:func:`pack_payload` packs ``operation`` and ``data`` once, and
:func:`encode_record` splices that payload into both the checksum input
and the map once a sequence and timestamp are known. The bytes are equal
to ``msgpack.packb`` of the whole map (the tests check it).

Sealed records (encryption at rest, :mod:`project_o.vault.sealing`) have
the same five keys: ``operation`` is nil, which no plain record can have
(an operation is a str), and ``data`` is the sealed ``[operation, data]``
(key id, nonce, AES-GCM ciphertext and tag), bound to the record's
sequence and timestamp as associated data. The checksum covers them as it
covers any record, so the structure of a segment, a torn tail included, is
checked without the key; :func:`open_sealed` needs it.

Reading a segment, :func:`walk_segment` yields entries (plain
:class:`WALEntry` or still-sealed :class:`SealedEntry`) and
:class:`Problem` objects. After a bad record it looks for the next valid
record further on (:func:`find_valid_record`); a problem with nothing
valid after it is ``at_tail``: in the last segment that is what a crash in
the middle of a write leaves behind, anywhere else it is corruption.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import msgpack

from project_o.errors import InvalidArgument
from project_o.vault.sealing import (
    SEAL_HEADER_SIZE,
    TAG_SIZE,
    Keyring,
    NonceSequence,
    SealBroken,
    missing_key,
)

__all__ = [
    "HEADER",
    "MAX_RECORD_SIZE",
    "BadRecord",
    "Payload",
    "Problem",
    "SealedEntry",
    "WALEntry",
    "checked_payload",
    "compute_checksum",
    "decode_entry",
    "encode",
    "encode_record",
    "encode_sealed_record",
    "find_valid_record",
    "open_sealed",
    "pack_payload",
    "read_record",
    "walk_segment",
]

#: The size prefix: a u32, big-endian.
HEADER = struct.Struct(">I")
#: The largest entry the u32 size prefix can describe.
MAX_RECORD_SIZE = 2**32 - 1
#: The keys of an entry, in the order we write them.
KEYS = ("sequence", "timestamp", "operation", "data", "checksum")

_KEY_SET = frozenset(KEYS)
_PACKED_KEYS = [msgpack.packb(key) for key in KEYS]
_K_SEQ, _K_TS, _K_OP, _K_DATA, _K_SUM = _PACKED_KEYS
#: fixmap with 5 pairs: every entry starts with this byte (msgpack-python
#: uses the fixmap form for up to 15 pairs).
_MAP_HEADER = b"\x85"
#: fixarray with 4 items: the checksum input [sequence, timestamp, operation, data].
_ARRAY_HEADER = b"\x94"
# encode_record runs under the WAL's lock for every entry, so it packs the
# three scalars itself, byte for byte what msgpack.packb produces (the tests
# compare): ints in their shortest unsigned form, floats as float 64 (0xcb),
# the 64-digit checksum as str 8 (0xd9, length 0x40).
_FLOAT64 = struct.Struct(">Bd").pack
_UINT32 = struct.Struct(">BI").pack
_UINT64 = struct.Struct(">BQ").pack
_STR8_64 = b"\xd9\x40"
#: Packed operation names: a program uses a handful (memory_set, memory_delete...).
_OPERATIONS: dict[str, bytes] = {}
_OPERATION_CACHE_SIZE = 256
#: Bytes an entry needs besides operation and data: the map header, the key
#: names, a 64-bit sequence (9), a float64 (9) and the 64-digit checksum (2 + 64).
_FIXED_OVERHEAD = 1 + sum(len(k) for k in _PACKED_KEYS) + 9 + 9 + 66
#: Nothing smaller than this can be an entry (empty operation, nil data,
#: 1-byte sequence): lets the resync skip most false candidates cheaply.
_MIN_ENTRY_SIZE = 1 + sum(len(k) for k in _PACKED_KEYS) + 1 + 9 + 1 + 1 + 66

#: ``operation`` and ``data``, each packed on its own (see :func:`pack_payload`).
Payload = tuple[bytes, bytes]

#: a sealed record's ``operation``: MessagePack nil
_SEALED_OPERATION = b"\xc0"
#: a sealed record's plaintext is the array [operation, data]
_PAIR_HEADER = b"\x92"
#: associated data of a sealed record: a context string, then its sequence and
#: timestamp, so a record moved to another position (or retimed) fails its tag
_SEAL_CONTEXT = b"project-o wal record\0"
_SEAL_POSITION = struct.Struct(">Qd")
#: the least a sealed record's data holds: key id, nonce and tag around an empty ciphertext
_SEAL_SIZE = SEAL_HEADER_SIZE + TAG_SIZE
#: what sealing adds to a record, at most
_SEAL_OVERHEAD = 1 + 4 + 12 + 16 + 5


@dataclass(frozen=True)
class WALEntry:
    """One decoded, checksum-verified WAL entry."""

    sequence: int
    timestamp: float
    operation: str
    data: Any
    checksum: str


@dataclass(frozen=True)
class SealedEntry:
    """A checksum-verified entry whose operation and data are sealed (see :func:`open_sealed`)."""

    sequence: int
    timestamp: float
    sealed: bytes
    checksum: str
    #: where the record starts in its segment (for error messages)
    offset: int = 0

    @property
    def key_id(self) -> int:
        """The id of the key that sealed it."""
        return int.from_bytes(self.sealed[:4])


#: what a segment holds: entries readable as they are, or sealed ones
AnyEntry = WALEntry | SealedEntry


@dataclass(frozen=True)
class Problem:
    """A record in a segment that could not be used.

    ``at_tail`` is True when no valid record follows it in the segment.
    """

    offset: int
    reason: str
    at_tail: bool


class BadRecord(Exception):
    """Signal from :func:`read_record`: the bytes at an offset are not a valid record.

    Internal to the vault: the WAL turns it into a torn tail or a
    :class:`~project_o.errors.WALCorruption`; it never reaches a user.
    """

    def __init__(self, offset: int, reason: str) -> None:
        super().__init__(f"offset {offset}: {reason}")
        self.offset = offset
        self.reason = reason


def pack_payload(operation: str, data: Any) -> Payload:
    """Pack ``operation`` and ``data``: the part of a record that needs no sequence.

    Raises :class:`InvalidArgument` if either cannot be stored, before any
    sequence number is spent on it.
    """
    if not isinstance(operation, str):
        raise InvalidArgument(f"operation must be a str, got {type(operation).__name__}")
    try:
        packed_op = _OPERATIONS.get(operation) or _remember_operation(operation)
        packed_data = msgpack.packb(data)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidArgument(
            f"WAL data must be MessagePack-encodable (dict, list, str, bytes, int, float, "
            f"bool, None); {type(data).__name__} failed: {exc}"
        ) from exc
    return checked_payload(packed_op, packed_data)


def checked_payload(operation: bytes, data: bytes) -> Payload:
    """A payload the caller packed itself (an operation str, any data), size-checked.

    Raises :class:`InvalidArgument`, as :func:`pack_payload` does, if the
    record would exceed :data:`MAX_RECORD_SIZE`.
    """
    # Room for a seal too (the WAL decides later, under its lock, where
    # nothing may fail): array header, key id, nonce, tag, a bin32 header.
    size = len(operation) + len(data) + _FIXED_OVERHEAD + _SEAL_OVERHEAD
    if size > MAX_RECORD_SIZE:
        raise InvalidArgument(
            f"WAL entry of {size} bytes exceeds the record limit of "
            f"{MAX_RECORD_SIZE} bytes; store large blobs in a checkpoint instead"
        )
    return operation, data


def _remember_operation(operation: str) -> bytes:
    packed: bytes = msgpack.packb(operation)
    if len(_OPERATIONS) < _OPERATION_CACHE_SIZE:
        _OPERATIONS[operation] = packed
    return packed


def encode_record(sequence: int, timestamp: float, payload: Payload) -> bytes:
    """The full record (size prefix + entry) for a payload from :func:`pack_payload`."""
    packed_op, packed_data = payload
    packed_seq = _pack_uint(sequence)
    packed_ts = _FLOAT64(0xCB, timestamp)
    digest = hashlib.sha256(
        b"".join((_ARRAY_HEADER, packed_seq, packed_ts, packed_op, packed_data))
    ).hexdigest()
    entry = b"".join(
        (
            _MAP_HEADER,
            _K_SEQ,
            packed_seq,
            _K_TS,
            packed_ts,
            _K_OP,
            packed_op,
            _K_DATA,
            packed_data,
            _K_SUM,
            _STR8_64,
            digest.encode(),
        )
    )
    return HEADER.pack(len(entry)) + entry


def encode_sealed_record(
    sequence: int, timestamp: float, payload: Payload, keyring: Keyring, nonces: NonceSequence
) -> bytes:
    """The full record for ``payload``, sealed with the keyring's current key.

    ``nonces`` is the writer's own sequence; the caller serialises calls
    (the WAL holds its lock, as it does for the sequence).
    """
    plaintext = b"".join((_PAIR_HEADER, *payload))
    sealed = keyring.seal(nonces.take(), plaintext, _seal_aad(sequence, timestamp))
    return encode_record(sequence, timestamp, (_SEALED_OPERATION, _pack_bin(sealed)))


def open_sealed(entry: SealedEntry, keyring: Keyring | None, where: str) -> WALEntry:
    """The plain entry inside ``entry``.

    Raises :class:`~project_o.errors.VaultKeyError` if its key is not in
    ``keyring``, :class:`~project_o.vault.sealing.SealBroken` if it was altered.
    """
    if keyring is None:
        raise missing_key(entry.key_id, where, None)
    plaintext = keyring.open(entry.sealed, _seal_aad(entry.sequence, entry.timestamp), where)
    try:
        operation, data = msgpack.unpackb(plaintext, raw=False, strict_map_key=False)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise SealBroken(f"the opened record is not [operation, data] ({exc})") from None
    if not isinstance(operation, str):
        raise SealBroken(f"the opened record's operation is {type(operation).__name__}, not str")
    return WALEntry(entry.sequence, entry.timestamp, operation, data, entry.checksum)


def _seal_aad(sequence: int, timestamp: float) -> bytes:
    return _SEAL_CONTEXT + _SEAL_POSITION.pack(sequence, timestamp)


def _pack_bin(value: bytes) -> bytes:
    """MessagePack bin of ``value`` (what packb emits for bytes), without a copy through packb."""
    size = len(value)
    if size <= 0xFF:
        head = bytes((0xC4, size))
    elif size <= 0xFFFF:
        head = bytes((0xC5, size >> 8, size & 0xFF))
    else:
        head = b"\xc6" + size.to_bytes(4)
    return head + value


def _pack_uint(value: int) -> bytes:
    """MessagePack's shortest encoding of a non-negative int (what packb emits)."""
    if value < 0x80:
        return bytes((value,))  # positive fixint
    if value <= 0xFF:
        return bytes((0xCC, value))
    if value <= 0xFFFF:
        return bytes((0xCD, value >> 8, value & 0xFF))
    if value <= 0xFFFFFFFF:
        return _UINT32(0xCE, value)
    return _UINT64(0xCF, value)


def encode(sequence: int, timestamp: float, operation: str, data: Any) -> bytes:
    """The full record for one entry (convenience for tests and tools)."""
    return encode_record(sequence, timestamp, pack_payload(operation, data))


def compute_checksum(sequence: int, timestamp: float, operation: str | None, data: Any) -> str:
    """SHA-256 hex digest of ``msgpack.packb([sequence, timestamp, operation, data])``."""
    return hashlib.sha256(msgpack.packb([sequence, timestamp, operation, data])).hexdigest()


def decode_entry(body: bytes, offset: int = 0) -> AnyEntry:
    """Decode and verify one entry; raise :class:`BadRecord` (at ``offset``) if invalid.

    A sealed entry is verified as far as the checksum goes and returned sealed.
    """
    try:
        obj = msgpack.unpackb(body, raw=False, strict_map_key=False)
    except (ValueError, TypeError, OverflowError, msgpack.UnpackException) as exc:
        # ValueError covers ExtraData, FormatError, StackError and bad UTF-8;
        # TypeError an unhashable map key (a map used as a key).
        raise BadRecord(offset, f"entry is not valid MessagePack ({exc})") from None
    if not isinstance(obj, dict) or obj.keys() != _KEY_SET:
        got = sorted(map(str, obj)) if isinstance(obj, dict) else type(obj).__name__
        raise BadRecord(offset, f"expected a map with keys {sorted(_KEY_SET)}, got {got}")
    sequence, timestamp = obj["sequence"], obj["timestamp"]
    operation, data, checksum = obj["operation"], obj["data"], obj["checksum"]
    if type(sequence) is not int or sequence < 0:
        raise BadRecord(offset, f"sequence must be a non-negative int, got {sequence!r}")
    if type(timestamp) is not float:
        raise BadRecord(offset, f"timestamp must be a float, got {timestamp!r}")
    sealed = operation is None
    if sealed and type(data) is not bytes:
        raise BadRecord(offset, f"a sealed record's data must be bytes, got {type(data).__name__}")
    if sealed and len(data) < _SEAL_SIZE:
        raise BadRecord(offset, f"a sealed record's data is {len(data)} bytes, shorter than a "
                        f"seal ({_SEAL_SIZE} bytes: key id, nonce, tag)")
    if not (sealed or isinstance(operation, str)) or not isinstance(checksum, str):
        raise BadRecord(offset, "operation (unless sealed) and checksum must be strings")
    try:
        expected = compute_checksum(sequence, timestamp, operation, data)
    except (ValueError, TypeError, OverflowError) as exc:  # e.g. nested past packb's limit
        raise BadRecord(offset, f"entry data cannot be re-packed to verify it ({exc})") from None
    if checksum != expected:
        raise BadRecord(
            offset, f"checksum mismatch: stored {checksum[:16]}…, computed {expected[:16]}…"
        )
    if sealed:
        return SealedEntry(sequence, timestamp, data, checksum, offset)
    return WALEntry(sequence, timestamp, operation, data, checksum)


def read_record(buf: bytes, offset: int) -> tuple[AnyEntry, int]:
    """Decode the record at ``offset``; return it and the offset just past it."""
    remaining = len(buf) - offset
    if remaining < HEADER.size:
        raise BadRecord(offset, f"{remaining} bytes left, too few for a size prefix")
    (size,) = HEADER.unpack_from(buf, offset)
    end = offset + HEADER.size + size
    if size < _MIN_ENTRY_SIZE:
        raise BadRecord(offset, f"size prefix {size} is below the smallest entry")
    if end > len(buf):
        raise BadRecord(
            offset, f"record claims {size} bytes but only {remaining - HEADER.size} follow"
        )
    return decode_entry(buf[offset + HEADER.size : end], offset), end


def find_valid_record(buf: bytes, start: int) -> int | None:
    """The first offset at or after ``start`` where a valid record begins, if any."""
    search = start + HEADER.size
    while (found := buf.find(_MAP_HEADER, search)) >= 0:
        try:
            read_record(buf, found - HEADER.size)
        except BadRecord:
            search = found + 1
            continue
        return found - HEADER.size
    return None


def walk_segment(buf: bytes, first_sequence: int | None) -> Iterator[AnyEntry | Problem]:
    """Yield the entries of a segment in order, and a :class:`Problem` per bad spot.

    ``first_sequence`` is what the first record must carry (the file name
    says); after it each record must be one more than the previous. After
    a bad record the walk resumes at the next valid one, if any, and takes
    its sequence as the new baseline, so one damaged spot is one problem.
    """
    offset, expected = 0, first_sequence
    while offset < len(buf):
        try:
            entry, end = read_record(buf, offset)
        except BadRecord as bad:
            resume = find_valid_record(buf, offset + 1)
            yield Problem(offset, bad.reason, at_tail=resume is None)
            if resume is None:
                return
            offset, expected = resume, None
            continue
        if expected is not None and entry.sequence != expected:
            where = "the file name says" if offset == 0 else "continuity requires"
            reason = f"record has sequence {entry.sequence} where {where} {expected}"
            yield Problem(offset, reason, at_tail=False)
        yield entry
        offset, expected = end, entry.sequence + 1
