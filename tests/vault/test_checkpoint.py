"""Checkpoint files: byte layout, round trip, and every way they can be damaged."""

from __future__ import annotations

import hashlib
import struct
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import msgpack
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from project_o.errors import CheckpointCorrupt, InvalidArgument
from project_o.vault.atomic import remove_stale_temps
from project_o.vault.checkpoint import (
    FLAG_ENCRYPTED,
    HEADER_SIZE,
    PAYLOAD_KEYS,
    CheckpointInfo,
    CheckpointStore,
    decode_header,
    encode_header,
)
from tests.vault.strategies import msgpack_values

#: the layout spelled out again, independently of the module (docs/design.md, "Checkpoints")
LAYOUT = ">16sIIQ16sQQ32sQ120s32s"

STATE: dict[str, Any] = {
    "agent_state": {"kv": {"name": "Ada", "n": 3, "big": 2**63 - 1, "neg": -5}, "ok": True},
    "memory_blocks": {"m1": {"text": "héllo wörld ✓", "vector": bytes(range(256)), "w": 0.25}},
    "tool_registry": {"search": {"doc": "find things", "args": ["q"]}},
    "llm_history": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": None}],
    "metrics": {"latency_ms": [1.5, 2.5], "errors": 0},
}


@pytest.fixture
def store(tmp_path: Path) -> CheckpointStore:
    return CheckpointStore(tmp_path / "checkpoints")


def _flip(path: Path, offset: int, bit: int = 0) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 1 << bit
    path.write_bytes(bytes(raw))


def _hand_made(path: Path, payload: bytes, **header: Any) -> None:
    """Write a checkpoint file whose hashes are right but whose contents we choose."""
    compressed = zstandard.ZstdCompressor().compress(payload)
    fields = {
        "checkpoint_id": uuid.uuid4(),
        "timestamp_ns": time.time_ns(),
        "compressed_size": len(compressed),
        "uncompressed_size": len(payload),
        "payload_sha256": hashlib.sha256(compressed).digest(),
        "last_sequence": 1,
    }
    fields.update(header)
    path.write_bytes(encode_header(**fields) + compressed)


def _rehash(raw: bytearray) -> bytes:
    raw[224:256] = hashlib.sha256(bytes(raw[:224])).digest()
    return bytes(raw)


# -- layout ---------------------------------------------------------------


def test_header_fields_sit_at_the_documented_offsets(store: CheckpointStore) -> None:
    before = time.time_ns()
    info = store.write(STATE, last_sequence=42)
    raw = info.path.read_bytes()
    (
        magic,
        version,
        flags,
        timestamp,
        id_bytes,
        csize,
        usize,
        payload_hash,
        last_seq,
        reserved,
        header_hash,
    ) = struct.unpack(LAYOUT, raw[:256])
    assert struct.calcsize(LAYOUT) == HEADER_SIZE == 256
    assert magic == b"O_CKPT_V2\0\0\0\0\0\0\0"
    assert (version, flags, last_seq) == (2, 0, 42)
    assert before <= timestamp <= time.time_ns()
    assert id_bytes == info.id.bytes
    assert info.path.name == f"{info.id}.ockpt"
    assert csize == len(raw) - 256 == info.compressed_size
    assert usize == info.uncompressed_size
    assert payload_hash == hashlib.sha256(raw[256:]).digest()
    assert reserved == bytes(120)
    assert header_hash == hashlib.sha256(raw[:224]).digest()


def test_payload_is_zstd_msgpack_with_exactly_the_five_keys(store: CheckpointStore) -> None:
    info = store.write(STATE, last_sequence=1)
    packed = zstandard.ZstdDecompressor().decompress(info.path.read_bytes()[256:])
    assert len(packed) == info.uncompressed_size
    payload = msgpack.unpackb(packed, raw=False)
    assert tuple(payload) == PAYLOAD_KEYS
    assert payload == STATE


def test_encode_decode_header_round_trip(tmp_path: Path) -> None:
    checkpoint_id = uuid.uuid4()
    raw = encode_header(
        checkpoint_id=checkpoint_id,
        timestamp_ns=123,
        compressed_size=4,
        uncompressed_size=9,
        payload_sha256=b"\x07" * 32,
        last_sequence=2**64 - 1,
    )
    info = decode_header(raw, tmp_path / "x.ockpt")
    assert len(raw) == HEADER_SIZE
    assert info == CheckpointInfo(
        id=checkpoint_id,
        path=tmp_path / "x.ockpt",
        timestamp_ns=123,
        last_sequence=2**64 - 1,
        compressed_size=4,
        uncompressed_size=9,
        flags=0,
        payload_sha256=b"\x07" * 32,
    )


# -- round trip and arguments -------------------------------------------


def test_round_trip_returns_the_state_and_matching_info(store: CheckpointStore) -> None:
    written = store.write(STATE, last_sequence=7)
    info, state = store.read(written.path)
    assert state == STATE
    assert info == written


def test_missing_keys_default_to_empty(store: CheckpointStore) -> None:
    info = store.write({"agent_state": {"kv": {}}}, last_sequence=0)
    _, state = store.read(info.path)
    assert state == {
        "agent_state": {"kv": {}},
        "memory_blocks": {},
        "tool_registry": {},
        "llm_history": [],
        "metrics": {},
    }


def test_unknown_keys_are_named_in_the_error(store: CheckpointStore) -> None:
    with pytest.raises(InvalidArgument, match=r"\['extra', 'kv'\]"):
        store.write({"kv": 1, "extra": 2, "metrics": {}}, last_sequence=0)
    assert list(store.directory.iterdir()) == []


@pytest.mark.parametrize("bad", [-1, 2**64, True, 1.0, "3"])
def test_last_sequence_must_be_a_u64(store: CheckpointStore, bad: Any) -> None:
    with pytest.raises(InvalidArgument, match="last_sequence"):
        store.write({}, last_sequence=bad)


def test_unserialisable_state_is_an_invalid_argument(store: CheckpointStore) -> None:
    with pytest.raises(InvalidArgument, match="MessagePack"):
        store.write({"agent_state": {"when": object()}}, last_sequence=0)


@pytest.mark.parametrize("options", [{"keep": 0}, {"compression_level": 0}, {"keep": 1.5}])
def test_bad_store_options_are_refused(tmp_path: Path, options: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgument):
        CheckpointStore(tmp_path, **options)


def test_directory_is_created(tmp_path: Path) -> None:
    CheckpointStore(tmp_path / "a" / "b")
    assert (tmp_path / "a" / "b").is_dir()




@settings(max_examples=40, deadline=None)
@given(agent_state=st.dictionaries(st.text(max_size=8), msgpack_values, max_size=5))
def test_any_msgpack_state_round_trips(tmp_path_factory: Any, agent_state: dict[str, Any]) -> None:
    store = CheckpointStore(tmp_path_factory.mktemp("ck"))
    info = store.write({"agent_state": agent_state}, last_sequence=1)
    assert store.read(info.path)[1]["agent_state"] == agent_state


# -- damage ---------------------------------------------------------------


@pytest.mark.parametrize("offset", range(HEADER_SIZE))
def test_a_bit_flip_anywhere_in_the_header_is_rejected(store: CheckpointStore, offset: int) -> None:
    info = store.write(STATE, last_sequence=5)
    _flip(info.path, offset, bit=offset % 8)
    with pytest.raises(CheckpointCorrupt) as read_error:
        store.read(info.path)
    with pytest.raises(CheckpointCorrupt):
        store.verify(info.path)
    assert read_error.value.reason
    assert str(info.path) in str(read_error.value)


@pytest.mark.parametrize(
    ("region", "offset", "reason"),
    [
        ("magic", 0, "magic"),
        ("magic padding", 12, "magic"),
        ("version", 19, "version"),
        ("flags", 23, "header hash"),
        ("timestamp", 30, "header hash"),
        ("id", 40, "header hash"),
        ("compressed size", 55, "header hash"),
        ("uncompressed size", 63, "header hash"),
        ("payload hash", 80, "header hash"),
        ("last sequence", 103, "header hash"),
        ("reserved", 150, "header hash"),
        ("header hash", 240, "header hash"),
    ],
)
def test_header_damage_names_the_failed_check(
    store: CheckpointStore, region: str, offset: int, reason: str
) -> None:
    info = store.write(STATE, last_sequence=5)
    _flip(info.path, offset)
    with pytest.raises(CheckpointCorrupt, match=reason):
        store.read(info.path)


@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_a_bit_flip_in_the_payload_is_rejected(store: CheckpointStore, where: str) -> None:
    info = store.write(STATE, last_sequence=5)
    size = info.path.stat().st_size
    offset = {"first": HEADER_SIZE, "middle": (HEADER_SIZE + size) // 2, "last": size - 1}[where]
    _flip(info.path, offset, bit=3)
    with pytest.raises(CheckpointCorrupt, match="payload hash mismatch"):
        store.read(info.path)
    with pytest.raises(CheckpointCorrupt, match="payload hash mismatch"):
        store.verify(info.path)


@pytest.mark.parametrize("keep_bytes", [0, 1, 100, 255, 256, 300, -1])
def test_truncated_file_is_rejected(store: CheckpointStore, keep_bytes: int) -> None:
    info = store.write(STATE, last_sequence=5)
    raw = info.path.read_bytes()
    info.path.write_bytes(raw[:keep_bytes])
    with pytest.raises(CheckpointCorrupt, match="truncated"):
        store.read(info.path)


def test_trailing_bytes_are_rejected(store: CheckpointStore) -> None:
    info = store.write(STATE, last_sequence=5)
    with open(info.path, "ab") as file:
        file.write(b"\0")
    with pytest.raises(CheckpointCorrupt, match="trailing bytes"):
        store.read(info.path)


@pytest.mark.parametrize(("flags", "named"), [(1 << 1, "unknown"), (1 << 31, "unknown"),
                                             (FLAG_ENCRYPTED | 1 << 2, "unknown")])
def test_unsupported_flags_are_rejected_clearly(
    store: CheckpointStore, flags: int, named: str
) -> None:
    path = store.directory / f"{uuid.uuid4()}.ockpt"
    _hand_made(path, msgpack.packb({key: {} for key in PAYLOAD_KEYS}), flags=flags)
    with pytest.raises(CheckpointCorrupt, match=f"{named}.*not supported"):
        store.read(path)
    assert store.latest_valid() is None


def test_newer_version_with_valid_hash_is_rejected_by_version(store: CheckpointStore) -> None:
    info = store.write(STATE, last_sequence=5)
    raw = bytearray(info.path.read_bytes())
    raw[16:20] = struct.pack(">I", 3)
    info.path.write_bytes(_rehash(raw[:256]) + bytes(raw[256:]))
    with pytest.raises(CheckpointCorrupt, match="format version 3"):
        store.read(info.path)


def test_nonzero_reserved_bytes_with_valid_hash_are_rejected(store: CheckpointStore) -> None:
    info = store.write(STATE, last_sequence=5)
    raw = bytearray(info.path.read_bytes())
    raw[200] = 1
    info.path.write_bytes(_rehash(raw[:256]) + bytes(raw[256:]))
    with pytest.raises(CheckpointCorrupt, match="reserved"):
        store.read(info.path)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (msgpack.packb({"agent_state": {}}), "payload keys"),
        (msgpack.packb([1, 2, 3]), "payload keys"),
        (b"\xc1", "not valid MessagePack"),
        (msgpack.packb({}) + b"\x01", "not valid MessagePack"),
    ],
)
def test_hash_valid_but_malformed_payload_is_rejected(
    store: CheckpointStore, payload: bytes, reason: str
) -> None:
    path = store.directory / f"{uuid.uuid4()}.ockpt"
    _hand_made(path, payload)
    store.verify(path)  # hashes are fine: only decoding can tell
    with pytest.raises(CheckpointCorrupt, match=reason):
        store.read(path)


# -- the store: fallback, pruning, scan -----------------------------------


def _state(n: int) -> dict[str, Any]:
    return {"agent_state": {"kv": {"n": n}}}


def test_latest_valid_is_none_when_empty(store: CheckpointStore) -> None:
    assert store.latest_valid() is None
    assert store.oldest_retained_sequence() is None
    assert store.scan() == []


def test_latest_valid_is_the_highest_sequence(store: CheckpointStore) -> None:
    store.write(_state(10), last_sequence=10)
    store.write(_state(20), last_sequence=20)
    newest = store.latest_valid()
    assert newest is not None
    assert newest[0].last_sequence == 20 and newest[1]["agent_state"] == {"kv": {"n": 20}}


@pytest.mark.parametrize("offset", [HEADER_SIZE + 5, 70, 0])
def test_latest_valid_falls_back_when_the_newest_is_corrupt(
    store: CheckpointStore, offset: int
) -> None:
    older = store.write(_state(10), last_sequence=10)
    newer = store.write(_state(20), last_sequence=20)
    _flip(newer.path, offset)
    found = store.latest_valid()
    assert found is not None
    assert found[0] == older and found[1]["agent_state"] == {"kv": {"n": 10}}
    outcomes = dict(store.scan())
    assert isinstance(outcomes[newer.path], CheckpointCorrupt)
    assert outcomes[older.path] == older
    assert store.oldest_retained_sequence() == 10


def test_latest_valid_is_none_when_every_checkpoint_is_corrupt(store: CheckpointStore) -> None:
    for sequence in (1, 2):
        _flip(store.write(_state(sequence), last_sequence=sequence).path, HEADER_SIZE)
    assert store.latest_valid() is None
    assert store.oldest_retained_sequence() is None


def test_scan_checks_the_payload_hash_not_just_the_header(store: CheckpointStore) -> None:
    info = store.write(STATE, last_sequence=3)
    _flip(info.path, info.path.stat().st_size - 1)
    [(path, outcome)] = store.scan()
    assert path == info.path
    assert isinstance(outcome, CheckpointCorrupt)
    assert "payload hash" in outcome.reason


def test_write_prunes_to_the_newest_keep(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, keep=2)
    infos = [store.write(_state(n), last_sequence=n) for n in (1, 2, 3, 4)]
    assert sorted(tmp_path.glob("*.ockpt")) == sorted(i.path for i in infos[2:])
    assert store.oldest_retained_sequence() == 3


def test_pruning_counts_only_valid_checkpoints_and_keeps_corrupt_ones(
    store: CheckpointStore,
) -> None:
    first = store.write(_state(10), last_sequence=10)
    damaged = store.write(_state(20), last_sequence=20)
    _flip(damaged.path, HEADER_SIZE)
    third = store.write(_state(30), last_sequence=30)
    # 10 survives: with 20 damaged, it is the only fallback left
    assert sorted(store.directory.glob("*.ockpt")) == sorted([first.path, damaged.path, third.path])
    assert store.oldest_retained_sequence() == 10


def test_a_checkpoint_behind_the_newest_is_not_pruned_as_it_is_written(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, keep=1)
    store.write(_state(30), last_sequence=30)
    behind = store.write(_state(20), last_sequence=20)
    assert behind.path.exists()
    assert store.read(behind.path)[1]["agent_state"] == {"kv": {"n": 20}}


def _stray_temp(directory: Path, pid: int) -> Path:
    stray = directory / f".{uuid.uuid4()}.ockpt.{pid}.0123456789abcdef.tmp"
    stray.write_bytes(b"O_CKPT_V2 half written")
    return stray


def test_stray_temp_files_are_ignored_by_scan_and_cleaned_by_write(
    store: CheckpointStore,
) -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    stray = _stray_temp(store.directory, child.pid)
    assert store.scan() == []
    assert store.latest_valid() is None
    info = store.write(STATE, last_sequence=1)
    assert not stray.exists()
    assert [p for p, _ in store.scan()] == [info.path]


def test_concurrent_writes_and_reads_from_threads(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, keep=2)
    errors: list[BaseException] = []
    done = threading.Event()

    def writer(base: int) -> None:
        try:
            for n in range(5):
                store.write(_state(base + n), last_sequence=base + n)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    def reader() -> None:
        try:
            while not done.is_set():
                found = store.latest_valid()
                assert found is None or found[1]["agent_state"]["kv"]["n"] == found[0].last_sequence
                store.scan()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(100 * t,)) for t in range(1, 5)]
    watcher = threading.Thread(target=reader)
    watcher.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    watcher.join()
    assert errors == []
    final = store.write(_state(1000), last_sequence=1000)
    outcomes = store.scan()
    assert len(outcomes) == 2 and all(isinstance(o, CheckpointInfo) for _, o in outcomes)
    expected: dict[str, Any] = {key: {} for key in PAYLOAD_KEYS}
    expected.update(llm_history=[], agent_state={"kv": {"n": 1000}})
    assert store.latest_valid() == (final, expected)
    assert remove_stale_temps(tmp_path) == []
