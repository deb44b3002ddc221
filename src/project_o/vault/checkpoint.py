"""Checkpoints: a full snapshot of an agent's state, verified end to end.

One file per checkpoint, ``VAULT/checkpoints/<uuid>.ockpt``: a 256-byte
header (big-endian, format :data:`HEADER_FORMAT`, then the SHA-256 of
those 224 bytes), then the payload, ``zstd(msgpack({agent_state,
memory_blocks, tool_registry, llm_history, metrics}))``. The header's
fields, offset by offset, are in docs/design.md ("Checkpoints").

With a keyring (encryption at rest, :mod:`project_o.vault.sealing`) the
zstd frame is sealed with AES-256-GCM before it is hashed, header flag
bit 0 is set, and the header's fields are the associated data; reading
opens it after the hash check. A checkpoint sealed with a key the store
lacks raises :class:`~project_o.errors.VaultKeyError`, which recovery
never mistakes for damage (no fall back to an older checkpoint).

Data flow::

    write(state, seq) ─► msgpack ─► zstd ─► [seal] ─► sha256 ─► header
                     ─► temp file ─fsync─► rename ─fsync dir─► prune to `keep`
    read(path)       ─► header checks ─► size check ─► sha256 ─► [open] ─► unzstd ─► unpack
    read_checkpoint(file)  the same, from an open unsealed file (an instance's copy)
    scan()           ─► header checks ─► size check ─► streamed sha256 (no unzstd)

A checkpoint that fails either hash, is truncated, or has a layout it does
not expect raises :class:`~project_o.errors.CheckpointCorrupt`; so does one
built to exhaust the reader (a file anyone could have written is read as
hostile): a header declaring more than ``max_payload_size`` bytes, a zstd
frame that decompresses to more than the header says, or MessagePack that
unpacks into more than ``max_containers`` maps and arrays.
:meth:`CheckpointStore.latest_valid` then falls back to the previous one,
and the vault replays a longer stretch of the WAL (which it only truncates
through :meth:`CheckpointStore.oldest_retained_sequence`).

MessagePack round-trips JSON-like data plus ``bytes``; tuples come back as
lists. Store vectors as ``bytes`` (``ndarray.tobytes()``), not as lists of
floats: it is smaller and much faster to pack and unpack.
"""

from __future__ import annotations

import gc
import hashlib
import logging
import os
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import msgpack
import zstandard

from project_o.errors import CheckpointCorrupt, InvalidArgument, VaultError, VaultKeyError
from project_o.vault.atomic import remove_stale_temps, write_atomic
from project_o.vault.sealing import (
    SEAL_HEADER_SIZE,
    TAG_SIZE,
    Keyring,
    NonceSequence,
    SealBroken,
    missing_key,
    sealed_key_id,
)

__all__ = [
    "FLAG_ENCRYPTED",
    "FORMAT_VERSION",
    "HEADER_FORMAT",
    "HEADER_SIZE",
    "MAGIC",
    "PAYLOAD_KEYS",
    "SUFFIX",
    "CheckpointInfo",
    "CheckpointStore",
    "decode_header",
    "encode_header",
    "read_checkpoint",
]

#: the payload map has exactly these keys, in this order (docs/design.md, "Checkpoints")
PAYLOAD_KEYS = ("agent_state", "memory_blocks", "tool_registry", "llm_history", "metrics")

#: ``O_CKPT_V2`` zero-padded to the 16-byte magic field
MAGIC = b"O_CKPT_V2".ljust(16, b"\0")
FORMAT_VERSION = 2
HEADER_SIZE = 256
#: bytes 0-223: magic, version, flags, timestamp, id, sizes, payload hash,
#: last sequence, 120 reserved bytes (kept as ``120s`` so we can check they are zero)
HEADER_FORMAT = ">16sIIQ16sQQ32sQ120s"
_HEADER_BODY = struct.Struct(HEADER_FORMAT)
_HASHED_SIZE = _HEADER_BODY.size  # 224; the header hash covers these bytes
_RESERVED = bytes(120)
_U64_LIMIT = 1 << 64

#: flag bit 0: the payload is sealed (key id ‖ nonce ‖ AES-256-GCM(zstd frame) ‖ tag)
FLAG_ENCRYPTED = 1 << 0
_FLAG_NAMES = {FLAG_ENCRYPTED: "payload encrypted"}
#: flags this build can read
_SUPPORTED_FLAGS = FLAG_ENCRYPTED
#: associated data of a sealed payload: every header field the ciphertext does
#: not itself determine (its size and hash do), so a payload moved under
#: another checkpoint's header, or a header edited, fails the tag
_SEAL_CONTEXT = b"project-o checkpoint\0"
_SEAL_FIELDS = struct.Struct(">16sIIQ16sQQ")
#: the least a sealed payload holds: key id, nonce and tag around an empty ciphertext
_SEAL_SIZE = SEAL_HEADER_SIZE + TAG_SIZE

SUFFIX = ".ockpt"

#: zstd level 3 is zstd's own default: ~2x faster to write than level 6 for a
#: few percent of size, and decompression speed barely depends on the level
DEFAULT_COMPRESSION_LEVEL = 3
#: payloads at least this big are compressed with several threads; below it
#: the cost of starting workers outweighs the gain
_THREADED_COMPRESSION_FROM = 32 << 20
#: a background checkpoint should not take every core from the serving path
_MAX_COMPRESSION_THREADS = 4
#: two kept means one checkpoint rotting on disk never costs data
DEFAULT_KEEP = 2
#: the largest uncompressed payload a store writes or reads: 5x the largest
#: state `project-o bench checkpoint` measures (100 MB), and small enough that a
#: forged header cannot make the reader allocate more than the machine has
DEFAULT_MAX_PAYLOAD_SIZE = 512 << 20
#: maps and arrays one payload may unpack into. An empty map is one byte of
#: MessagePack but ~64 bytes of Python, so this bounds what a payload of tiny
#: containers costs (about 1 GiB); a 100 MB agent state holds ~100,000
DEFAULT_MAX_CONTAINERS = 16_000_000

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CheckpointInfo:
    """What a checkpoint's header says (and, once verified, what the file holds)."""

    id: uuid.UUID
    path: Path
    timestamp_ns: int
    last_sequence: int
    compressed_size: int
    uncompressed_size: int
    flags: int
    payload_sha256: bytes = field(default=b"", repr=False)

    @property
    def sealed(self) -> bool:
        """Whether the payload is encrypted (flag bit 0)."""
        return bool(self.flags & FLAG_ENCRYPTED)

    @property
    def recency(self) -> tuple[int, int]:
        """Sort key: newer checkpoints cover more of the WAL, then were written later."""
        return (self.last_sequence, self.timestamp_ns)


#: one file of :meth:`CheckpointStore.scan`: its info, or why it is rejected (or,
#: in a deep scan, that its key is missing)
ScanResult = tuple[Path, CheckpointInfo | CheckpointCorrupt | VaultKeyError]


def encode_header(
    *,
    checkpoint_id: uuid.UUID,
    timestamp_ns: int,
    compressed_size: int,
    uncompressed_size: int,
    payload_sha256: bytes,
    last_sequence: int,
    flags: int = 0,
) -> bytes:
    """The 256-byte header for these fields, its own hash included."""
    body = _HEADER_BODY.pack(
        MAGIC, FORMAT_VERSION, flags, timestamp_ns, checkpoint_id.bytes,
        compressed_size, uncompressed_size, payload_sha256, last_sequence, _RESERVED,
    )
    return body + hashlib.sha256(body).digest()


def decode_header(raw: bytes, path: Path | str) -> CheckpointInfo:
    """Parse and check a header: magic, version, header hash, flags, zero padding.

    Raises :class:`CheckpointCorrupt` naming the first check that failed.
    """
    path = Path(path)
    if len(raw) != HEADER_SIZE:
        raise CheckpointCorrupt(str(path), f"truncated header: {len(raw)} of {HEADER_SIZE} bytes")
    (magic, version, flags, timestamp_ns, id_bytes, compressed_size, uncompressed_size,
     payload_sha256, last_sequence, reserved) = _HEADER_BODY.unpack_from(raw)
    if magic != MAGIC:
        raise CheckpointCorrupt(
            str(path), f"bad magic {magic!r}: not a Project O checkpoint (expected {MAGIC!r})"
        )
    if version != FORMAT_VERSION:
        raise CheckpointCorrupt(
            str(path), f"format version {version}, this build reads version {FORMAT_VERSION} "
            "(a newer Project O wrote it, or the header is damaged)",
        )
    if hashlib.sha256(raw[:_HASHED_SIZE]).digest() != raw[_HASHED_SIZE:]:
        raise CheckpointCorrupt(str(path), "header hash mismatch: the header is damaged")
    _check_flags(flags, path)
    if flags & FLAG_ENCRYPTED and compressed_size < _SEAL_SIZE:
        raise CheckpointCorrupt(
            str(path), f"a sealed payload of {compressed_size} bytes is shorter than a seal "
            f"({_SEAL_SIZE} bytes: key id, nonce, tag)",
        )
    if reserved != _RESERVED:
        raise CheckpointCorrupt(str(path), "reserved header bytes 104-223 are not zero")
    return CheckpointInfo(
        id=uuid.UUID(bytes=id_bytes), path=path, timestamp_ns=timestamp_ns,
        last_sequence=last_sequence, compressed_size=compressed_size,
        uncompressed_size=uncompressed_size, flags=flags, payload_sha256=payload_sha256,
    )


def _check_flags(flags: int, path: Path) -> None:
    unsupported = flags & ~_SUPPORTED_FLAGS
    if not unsupported:
        return
    names = [name for bit, name in _FLAG_NAMES.items() if unsupported & bit] or ["unknown"]
    raise CheckpointCorrupt(
        str(path), f"header flags 0x{flags:08x} ({', '.join(names)}) are not supported by this "
        "build; open it with the build that wrote it",
    )


class CheckpointStore:
    """The checkpoint files of one vault (``VAULT/checkpoints``).

    Thread-safe: writes (and the pruning after them) are serialised by a
    lock of the store's own; reads of a single file need no lock. It shares
    nothing with the WAL, so a checkpoint can be written from a background
    thread while appends go on.
    """

    def __init__(
        self,
        directory: Path,
        *,
        compression_level: int = DEFAULT_COMPRESSION_LEVEL,
        keep: int = DEFAULT_KEEP,
        max_payload_size: int = DEFAULT_MAX_PAYLOAD_SIZE,
        max_containers: int = DEFAULT_MAX_CONTAINERS,
        keyring: Keyring | None = None,
    ) -> None:
        """``keyring``: seal what is written with its current key, open what it can.

        Without one, sealed checkpoints raise :class:`VaultKeyError` when read.
        """
        level_ok = isinstance(compression_level, int) and not isinstance(compression_level, bool)
        if not level_ok or not 1 <= compression_level <= zstandard.MAX_COMPRESSION_LEVEL:
            raise InvalidArgument(
                f"compression_level must be 1..{zstandard.MAX_COMPRESSION_LEVEL}, "
                f"got {compression_level!r}; 1-3 keep restores fast"
            )
        if not isinstance(keep, int) or keep < 1:
            raise InvalidArgument(f"keep must be an int >= 1, got {keep!r}")
        for name, value in (("max_payload_size", max_payload_size),
                            ("max_containers", max_containers)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidArgument(f"{name} must be an int >= 1, got {value!r}")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.compression_level = compression_level
        self.keep = keep
        self.max_payload_size = max_payload_size
        self.max_containers = max_containers
        self.keyring = keyring
        # Checkpoints are few per key, but a counter costs nothing (see NonceSequence).
        self._nonces = NonceSequence()
        self._lock = threading.RLock()

    def path_for(self, checkpoint_id: uuid.UUID) -> Path:
        """Where the checkpoint with this id lives."""
        return self.directory / f"{checkpoint_id}{SUFFIX}"

    # -- writing --------------------------------------------------------

    def write(self, state: Mapping[str, Any], last_sequence: int) -> CheckpointInfo:
        """Durably write ``state`` as a checkpoint covering the WAL through ``last_sequence``.

        ``state`` holds some of :data:`PAYLOAD_KEYS` (missing ones become
        ``{}``, ``llm_history`` becomes ``[]``). On return the file is on
        stable storage; older checkpoints beyond ``keep`` have been removed.
        """
        payload = _payload_from(state)
        _check_sequence(last_sequence)
        packed = _pack(payload)
        if len(packed) > self.max_payload_size:
            raise InvalidArgument(
                f"checkpoint state is {len(packed)} bytes of MessagePack, above this store's "
                f"max_payload_size of {self.max_payload_size}; it could not be read back - "
                "raise the limit or keep large data out of the agent state"
            )
        compressed = self._compress(packed)
        checkpoint_id, timestamp_ns = uuid.uuid4(), time.time_ns()
        flags = 0 if self.keyring is None else FLAG_ENCRYPTED
        if self.keyring is not None:
            with self._lock:  # the nonce counter is the store's
                nonce = self._nonces.take()
            aad = _seal_aad(flags, timestamp_ns, checkpoint_id, len(packed), last_sequence)
            compressed = self.keyring.seal(nonce, compressed, aad)
        info = CheckpointInfo(
            id=checkpoint_id, path=self.path_for(checkpoint_id), timestamp_ns=timestamp_ns,
            last_sequence=last_sequence, compressed_size=len(compressed),
            uncompressed_size=len(packed), flags=flags,
            payload_sha256=hashlib.sha256(compressed).digest(),
        )
        header = encode_header(
            checkpoint_id=info.id, timestamp_ns=info.timestamp_ns,
            compressed_size=info.compressed_size, uncompressed_size=info.uncompressed_size,
            payload_sha256=info.payload_sha256, last_sequence=last_sequence, flags=flags,
        )
        with self._lock:
            try:
                remove_stale_temps(self.directory)  # leftovers of a writer killed mid-write
                write_atomic(info.path, (header, compressed))
            except OSError as exc:
                raise VaultError(
                    f"could not write checkpoint {info.path}: {exc}; the previous "
                    "checkpoints are untouched and the WAL still holds every entry"
                ) from exc
            self._prune(keep_also=info.id)
        return info

    def _compress(self, packed: bytes) -> bytes:
        threads = 0
        if len(packed) >= _THREADED_COMPRESSION_FROM:
            threads = min(_MAX_COMPRESSION_THREADS, os.cpu_count() or 1)
            threads = threads if threads > 1 else 0
        # A compressor object is not safe to share between threads: make one per call.
        compressor = zstandard.ZstdCompressor(level=self.compression_level, threads=threads)
        return compressor.compress(packed)

    def _prune(self, keep_also: uuid.UUID) -> None:
        valid = sorted(
            (info for _, info in self._scan() if isinstance(info, CheckpointInfo)),
            key=lambda info: info.recency, reverse=True,
        )
        # The file just written always stays, even if it covers less of the
        # WAL than older ones: we are about to hand its info to the caller.
        for info in valid[self.keep:]:
            if info.id != keep_also:
                info.path.unlink(missing_ok=True)

    # -- reading --------------------------------------------------------

    def read(self, path: Path) -> tuple[CheckpointInfo, dict[str, Any]]:
        """Verify the checkpoint at ``path`` completely and return its info and payload.

        Raises :class:`CheckpointCorrupt` (with the reason) if a hash, a
        size, the layout or a sealed payload's tag is wrong;
        :class:`VaultKeyError` if it is sealed with a key this store lacks;
        ``FileNotFoundError`` if it is gone.
        """
        info, compressed = self._frame(Path(path))
        return info, _unpack(_decompress(compressed, info), info.path, self.max_containers)

    def plain_image(self, path: Path) -> bytes:
        """The checkpoint at ``path`` as the bytes of an unsealed checkpoint file.

        For handing a checkpoint to a process that must not hold the key
        (an instance restoring): a sealed one is opened here, its tag
        checked, and given a header of its own (flags 0, the size and hash
        of the zstd frame); a plain one is returned as it is, hash checked.
        The receiver verifies it completely, as it would the file.
        """
        info, compressed = self._frame(Path(path))
        header = encode_header(
            checkpoint_id=info.id, timestamp_ns=info.timestamp_ns,
            compressed_size=len(compressed), uncompressed_size=info.uncompressed_size,
            payload_sha256=hashlib.sha256(compressed).digest(), last_sequence=info.last_sequence,
        )
        return header + bytes(compressed)

    def _frame(self, path: Path) -> tuple[CheckpointInfo, bytes | bytearray]:
        """The header and the zstd frame of ``path``: hash checked, opened if sealed."""
        with open(path, "rb", buffering=0) as file:
            info, payload = _read_verified(file, path, self.max_payload_size)
        return info, self._open(info, payload) if info.sealed else payload

    def _open(self, info: CheckpointInfo, sealed: bytearray) -> bytes:
        where = f"checkpoint {info.path}"
        if self.keyring is None:
            raise missing_key(sealed_key_id(sealed), where, None)
        aad = _seal_aad(info.flags, info.timestamp_ns, info.id, info.uncompressed_size,
                        info.last_sequence)
        try:
            return self.keyring.open(sealed, aad, where)
        except SealBroken as broken:
            raise CheckpointCorrupt(str(info.path), f"sealed payload: {broken}") from None

    def key_id(self, path: Path) -> int | None:
        """The id of the key that sealed the checkpoint at ``path`` (None: not sealed)."""
        with open(path, "rb") as file:
            info = decode_header(file.read(HEADER_SIZE), path)
            return sealed_key_id(file.read(4)) if info.sealed else None

    def verify(self, path: Path) -> CheckpointInfo:
        """Check header, size and payload hash of ``path`` without decompressing it."""
        path = Path(path)
        with open(path, "rb") as file:
            info = self._read_header_and_size(file, path)
            digest = hashlib.file_digest(file, "sha256").digest()
        if digest != info.payload_sha256:
            raise CheckpointCorrupt(str(path), "payload hash mismatch: the payload is damaged")
        return info

    def scan(self, *, deep: bool = False) -> list[ScanResult]:
        """Every ``*.ockpt`` file, sorted by name, with its info or why it is rejected.

        Payload hashes are checked (streamed, not decompressed); ``deep``
        also decompresses and unpacks each payload, as a restore would, so
        a checkpoint built to exhaust the reader is reported too, and a sealed
        one is opened (its tag checked; a missing key is reported as a
        :class:`VaultKeyError`). Temp files of unfinished writes are not listed.
        """
        with self._lock:
            return self._scan(deep=deep)

    def _scan(self, *, deep: bool = False) -> list[ScanResult]:
        check = (lambda path: self.read(path)[0]) if deep else self.verify
        results: list[ScanResult] = []
        for path in self._paths():
            try:
                results.append((path, check(path)))
            except (CheckpointCorrupt, VaultKeyError) as exc:
                results.append((path, exc))
            except FileNotFoundError:
                continue  # pruned by another store on this directory meanwhile
        return results

    def latest_valid(self) -> tuple[CheckpointInfo, dict[str, Any]] | None:
        """The newest checkpoint (by last sequence, then time) that fully verifies.

        Damaged ones are skipped with a warning, so recovery starts from the
        previous checkpoint and replays more WAL. ``None`` if none verifies.
        """
        with self._lock:
            for info in sorted(self._headers(), key=lambda info: info.recency, reverse=True):
                try:
                    return self.read(info.path)
                except CheckpointCorrupt as exc:
                    _log.warning("%s; falling back to an older checkpoint", exc)
                except FileNotFoundError:
                    continue
            return None

    def oldest_retained_sequence(self) -> int | None:
        """The last sequence of the oldest valid checkpoint on disk, or ``None``.

        The WAL may be truncated through this sequence and no further, so a
        damaged newest checkpoint can still fall back to an older one.
        """
        valid = [info.last_sequence for _, info in self.scan() if isinstance(info, CheckpointInfo)]
        return min(valid, default=None)

    def _read_header_and_size(self, file: BinaryIO, path: Path) -> CheckpointInfo:
        return _read_capped_header(file, path, self.max_payload_size)

    def _paths(self) -> list[Path]:
        return sorted(self.directory.glob(f"*{SUFFIX}"))

    def _headers(self) -> list[CheckpointInfo]:
        headers = []
        for path in self._paths():
            try:
                with open(path, "rb") as file:
                    headers.append(self._read_header_and_size(file, path))
            except CheckpointCorrupt as exc:
                _log.warning("%s; skipping it", exc)
            except FileNotFoundError:
                continue
        return headers


def read_checkpoint(
    file: BinaryIO, name: Path | str, *, max_payload_size: int = DEFAULT_MAX_PAYLOAD_SIZE,
    max_containers: int = DEFAULT_MAX_CONTAINERS,
) -> tuple[CheckpointInfo, dict[str, Any]]:
    """Verify the checkpoint in ``file`` (read from its start) completely; its info and payload.

    What an instance restores from: a sealed copy handed to it, never a
    path into the vault. ``name`` labels errors. Raises
    :class:`CheckpointCorrupt` as :meth:`CheckpointStore.read` does.
    """
    path = Path(name)
    info, compressed = _read_verified(file, path, max_payload_size)
    if info.sealed:  # copies for instances are opened by the supervisor (plain_image)
        raise missing_key(sealed_key_id(compressed), f"checkpoint {path}", None)
    return info, _unpack(_decompress(compressed, info), path, max_containers)


# -- helpers ------------------------------------------------------------


def _read_verified(
    file: BinaryIO, path: Path, max_payload_size: int
) -> tuple[CheckpointInfo, bytearray]:
    """Header, size and payload hash of the checkpoint in ``file``; its info and payload."""
    info = _read_capped_header(file, path, max_payload_size)
    payload = _read_exact(file, info)
    if hashlib.sha256(payload).digest() != info.payload_sha256:
        raise CheckpointCorrupt(str(path), "payload hash mismatch: the payload is damaged")
    return info, payload


def _read_capped_header(file: BinaryIO, path: Path, max_payload_size: int) -> CheckpointInfo:
    info = _read_header_and_size(file, path)
    if info.uncompressed_size > max_payload_size:
        raise CheckpointCorrupt(
            str(path), f"header declares {info.uncompressed_size} bytes uncompressed, above "
            f"this store's max_payload_size of {max_payload_size}; refused unread",
        )
    return info


def _payload_from(state: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(state, Mapping):
        raise InvalidArgument(f"state must be a mapping of {PAYLOAD_KEYS}, got {type(state)!r}")
    unknown = sorted(str(key) for key in state if key not in PAYLOAD_KEYS)
    if unknown:
        raise InvalidArgument(
            f"unknown checkpoint state keys {unknown}; a checkpoint holds only {list(PAYLOAD_KEYS)}"
            " - put agent-specific data under agent_state"
        )
    payload = {key: state.get(key, {}) for key in PAYLOAD_KEYS}
    if "llm_history" not in state:
        payload["llm_history"] = []
    return payload


def _seal_aad(flags: int, timestamp_ns: int, checkpoint_id: uuid.UUID, uncompressed_size: int,
              last_sequence: int) -> bytes:
    return _SEAL_CONTEXT + _SEAL_FIELDS.pack(MAGIC, FORMAT_VERSION, flags, timestamp_ns,
                                             checkpoint_id.bytes, uncompressed_size, last_sequence)


def _check_sequence(last_sequence: int) -> None:
    if isinstance(last_sequence, bool) or not isinstance(last_sequence, int):
        raise InvalidArgument(f"last_sequence must be an int, got {last_sequence!r}")
    if not 0 <= last_sequence < _U64_LIMIT:
        raise InvalidArgument(f"last_sequence must be in 0..2**64-1, got {last_sequence}")


def _pack(payload: dict[str, Any]) -> bytes:
    try:
        return msgpack.packb(payload, use_bin_type=True)  # type: ignore[no-any-return]
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidArgument(
            f"checkpoint state is not MessagePack-serialisable ({exc}); use dicts, lists, "
            "str, bytes, int, float, bool and None (vectors as ndarray.tobytes())"
        ) from exc


def _read_header_and_size(file: BinaryIO, path: Path) -> CheckpointInfo:
    info = decode_header(file.read(HEADER_SIZE), path)
    actual = os.fstat(file.fileno()).st_size
    expected = HEADER_SIZE + info.compressed_size
    if actual != expected:
        what = "truncated" if actual < expected else "has trailing bytes"
        raise CheckpointCorrupt(
            str(path), f"file {what}: {actual} bytes, the header says {expected}"
        )
    return info


def _read_exact(file: BinaryIO, info: CheckpointInfo) -> bytearray:
    # One buffer of the exact size, filled in place: no intermediate copies.
    buffer = bytearray(info.compressed_size)
    view = memoryview(buffer)
    filled = 0
    while filled < len(buffer):
        count = file.readinto(view[filled:])  # type: ignore[attr-defined]
        if not count:
            raise CheckpointCorrupt(
                str(info.path), f"file truncated while reading: payload {filled} of "
                f"{info.compressed_size} bytes",
            )
        filled += count
    return buffer


def _decompress(compressed: bytes | bytearray, info: CheckpointInfo) -> bytes:
    try:
        declared = zstandard.frame_content_size(compressed)
        if declared != info.uncompressed_size:
            raise CheckpointCorrupt(
                str(info.path), f"zstd frame declares {declared} bytes, the header says "
                f"{info.uncompressed_size}",
            )
        # The output buffer is the size the header declares, and zstd refuses a
        # frame that would overflow it ("destination buffer is too small").
        data = zstandard.ZstdDecompressor().decompress(
            compressed, max_output_size=info.uncompressed_size)
    except zstandard.ZstdError as exc:
        raise CheckpointCorrupt(str(info.path), f"payload does not decompress: {exc}") from exc
    if len(data) != info.uncompressed_size:
        raise CheckpointCorrupt(
            str(info.path), f"payload decompressed to {len(data)} bytes, the header says "
            f"{info.uncompressed_size}",
        )
    return data


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a large payload is unpacked.

    Unpacking allocates tens of thousands of containers in one burst; each
    few hundred trigger a collection, and the older generations make it walk
    every live object in the process (in a busy supervisor, a lot of them).
    A MessagePack payload is a tree - it cannot contain cycles - so nothing
    it builds is cyclic garbage: the walks are pure cost.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class _TooManyContainers(Exception):
    """Raised from inside the unpacker: stop before the payload grows further."""


def _container_counter(limit: int) -> Callable[[Any], Any]:
    """A msgpack object/list hook that passes values through and counts them.

    msgpack has limits per container but none for a whole payload; the hook
    runs once per map or array, which costs under 1 % of unpacking.
    """
    seen = 0

    def count(value: Any) -> Any:
        nonlocal seen
        seen += 1
        if seen > limit:
            raise _TooManyContainers(limit)
        return value

    return count


def _unpack(data: bytes, path: Path, max_containers: int) -> dict[str, Any]:
    count = _container_counter(max_containers)
    try:
        with _gc_paused():
            payload = msgpack.unpackb(data, raw=False, strict_map_key=False,
                                      object_hook=count, list_hook=count)
    except _TooManyContainers:
        raise CheckpointCorrupt(
            str(path), f"payload unpacks into more than {max_containers} maps and arrays "
            "(max_containers); refused before it could exhaust memory",
        ) from None
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise CheckpointCorrupt(str(path), f"payload is not valid MessagePack: {exc}") from exc
    if not isinstance(payload, dict) or set(payload) != set(PAYLOAD_KEYS):
        found = list(payload) if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointCorrupt(
            str(path), f"payload keys are {found}, expected exactly {list(PAYLOAD_KEYS)}"
        )
    return payload
