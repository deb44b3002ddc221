"""Checkpoint files written by a hostile hand: bombs and lying headers are refused.

Each file here has valid hashes: only the limits of the reader can tell it
apart from a real checkpoint. A refused checkpoint is invalid, recovery
falls back to the previous one, and ``vault verify`` reports it.
"""

from __future__ import annotations

import hashlib
import struct
import time
import uuid
from pathlib import Path
from typing import Any

import msgpack
import pytest
import zstandard

from project_o.errors import CheckpointCorrupt, InvalidArgument
from project_o.vault.checkpoint import (
    FLAG_ENCRYPTED,
    PAYLOAD_KEYS,
    CheckpointStore,
    encode_header,
    read_checkpoint,
)
from project_o.vault.verify import verify_vault

#: small limits, so that a bomb is cheap to build and the refusal fast
LIMITS = {"max_payload_size": 1 << 20, "max_containers": 10_000}


def _forge(path: Path, compressed: bytes, uncompressed_size: int, sequence: int = 5,
           flags: int = 0) -> None:
    """A checkpoint file with a correct header hash and payload hash around ``compressed``."""
    header = encode_header(
        checkpoint_id=uuid.UUID(path.stem), timestamp_ns=time.time_ns(),
        compressed_size=len(compressed), uncompressed_size=uncompressed_size,
        payload_sha256=hashlib.sha256(compressed).digest(), last_sequence=sequence, flags=flags,
    )
    path.write_bytes(header + compressed)


def _payload(agent_state: Any) -> bytes:
    payload = {key: {} for key in PAYLOAD_KEYS}
    payload["llm_history"] = []
    payload["agent_state"] = agent_state
    return msgpack.packb(payload, use_bin_type=True)  # type: ignore[no-any-return]


def _new_path(store: CheckpointStore) -> Path:
    return store.directory / f"{uuid.uuid4()}.ockpt"


@pytest.fixture
def store(tmp_path: Path) -> CheckpointStore:
    return CheckpointStore(tmp_path / "checkpoints", **LIMITS)


def test_a_header_declaring_more_than_the_limit_is_refused_unread(
    store: CheckpointStore,
) -> None:
    good = store.write({"agent_state": {"n": 1}}, last_sequence=3)
    path = _new_path(store)
    packed = _payload({"n": 2})
    # The zstd frame and both hashes agree with a 2 GiB claim: only the limit stops it.
    _forge(path, zstandard.ZstdCompressor().compress(packed), uncompressed_size=2 << 30)
    with pytest.raises(CheckpointCorrupt, match="above this store's max_payload_size"):
        store.verify(path)
    found = store.latest_valid()
    assert found is not None
    info, state = found
    assert info.id == good.id and state["agent_state"] == {"n": 1}


def test_a_zstd_frame_larger_than_its_header_says_is_refused(store: CheckpointStore) -> None:
    packed = _payload({"blob": "x" * 100_000})
    frame = bytearray(zstandard.ZstdCompressor(write_checksum=False).compress(packed))
    assert frame[4] & 0xC0 == 0x80, "expected a 4-byte frame content size field"
    claimed = 1000
    frame[5:9] = struct.pack("<I", claimed)  # the frame now lies about its size
    path = _new_path(store)
    _forge(path, bytes(frame), uncompressed_size=claimed)
    store.verify(path)  # the hashes are right
    with pytest.raises(CheckpointCorrupt, match="does not decompress"):
        store.read(path)


def test_msgpack_that_expands_into_too_many_containers_is_refused(
    store: CheckpointStore,
) -> None:
    count = 200_000  # 200 KB of empty maps: ~13 MB of Python objects
    bomb = _payload([{}] * count)
    assert len(bomb) < LIMITS["max_payload_size"]
    path = _new_path(store)
    _forge(path, zstandard.ZstdCompressor().compress(bomb), uncompressed_size=len(bomb))
    with pytest.raises(CheckpointCorrupt, match="more than 10000 maps and arrays"):
        store.read(path)


def test_a_payload_within_the_limits_still_reads(store: CheckpointStore) -> None:
    state = {"agent_state": {"items": [{"i": i} for i in range(5_000)]}}
    info = store.write(state, last_sequence=9)
    _, payload = store.read(info.path)
    assert payload["agent_state"] == state["agent_state"]


def test_a_state_over_the_limit_is_not_written(store: CheckpointStore) -> None:
    with pytest.raises(InvalidArgument, match="max_payload_size"):
        store.write({"agent_state": {"blob": b"\0" * (2 << 20)}}, last_sequence=1)
    assert list(store.directory.iterdir()) == []


@pytest.mark.parametrize("option", ["max_payload_size", "max_containers"])
@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "10"])
def test_bad_limits_are_refused(tmp_path: Path, option: str, bad: Any) -> None:
    with pytest.raises(InvalidArgument, match=option):
        CheckpointStore(tmp_path, **{option: bad})


def test_vault_verify_reports_a_bomb_that_hashes_cannot_see(tmp_path: Path) -> None:
    directory = tmp_path / "checkpoints"
    good = CheckpointStore(directory).write({"agent_state": {"n": 1}}, last_sequence=0)
    bomb = _payload([{}] * 20_000_000)  # 20 MB of empty maps: over 1 GiB unpacked
    path = directory / f"{uuid.uuid4()}.ockpt"
    _forge(path, zstandard.ZstdCompressor().compress(bomb), uncompressed_size=len(bomb),
           sequence=0)

    report = verify_vault(tmp_path)

    invalid = {Path(item["path"]).name: item["reason"] for item in report.checkpoints_invalid}
    assert "maps and arrays" in invalid[path.name]
    assert [item["id"] for item in report.checkpoints_valid] == [str(good.id)]
    assert not report.sound


@pytest.mark.parametrize("size", [0, 3, 31])
def test_a_sealed_payload_shorter_than_a_seal_is_damage_not_a_crash(
    store: CheckpointStore, size: int,
) -> None:
    good = store.write({"agent_state": {"n": 1}}, last_sequence=3)
    path = _new_path(store)
    _forge(path, b"\x01" * size, uncompressed_size=10, sequence=9, flags=FLAG_ENCRYPTED)
    with pytest.raises(CheckpointCorrupt, match="shorter than a seal"):
        store.read(path)
    with open(path, "rb") as file, pytest.raises(CheckpointCorrupt, match="shorter than a seal"):
        read_checkpoint(file, path)
    [rejected] = [outcome for found, outcome in store.scan(deep=True) if found == path]
    assert isinstance(rejected, CheckpointCorrupt)
    found = store.latest_valid()  # recovery falls back to the older one
    assert found is not None and found[0].id == good.id
