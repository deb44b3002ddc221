"""Encryption at rest: sealed WAL records and checkpoints, keys, rotation, tampering.

The byte layout is spelled out again here, independently of the module
(docs/design.md, "Encryption at rest"), and records are opened by hand
with ``AESGCM`` from it.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from pathlib import Path
from typing import Any

import msgpack
import pytest
import zstandard
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from project_o.errors import CheckpointCorrupt, InvalidArgument, VaultKeyError, WALCorruption
from project_o.vault import Vault
from project_o.vault.checkpoint import FLAG_ENCRYPTED, HEADER_SIZE, CheckpointStore
from project_o.vault.quarantine import Quarantine
from project_o.vault.sealing import (
    KEY_ENV,
    Keyring,
    NonceSequence,
    key_id_of,
    load_keyring,
    parse_keys,
)
from project_o.vault.verify import verify_vault
from project_o.vault.wal import WAL, scan
from project_o.vault.wal_record import HEADER, compute_checksum

pytestmark = pytest.mark.usefixtures("no_leaked_flushers")

DESIGN = Path(__file__).resolve().parents[2] / "docs" / "design.md"
#: the documented layout, written out again
KEY_ID_CONTEXT = b"project-o vault key id\0"
WAL_CONTEXT = b"project-o wal record\0"
WAL_POSITION = ">Qd"
CHECKPOINT_CONTEXT = b"project-o checkpoint\0"
CHECKPOINT_POSITION = ">16sIIQ16sQQ"
HEADER_BODY = ">16sIIQ16sQQ32sQ120s"

KEY_A, KEY_B = bytes(range(32)), bytes(range(100, 132))
SECRET = "the launch code is 0000"


def ring(*keys: bytes) -> Keyring:
    return Keyring(keys)


def records(path: Path) -> list[dict[str, Any]]:
    """Every record of a segment, decoded as plain MessagePack maps (no verification)."""
    buf, offset, found = path.read_bytes(), 0, []
    while offset + HEADER.size <= len(buf):
        (size,) = HEADER.unpack_from(buf, offset)
        if size == 0:
            break  # preallocated zeros
        found.append(msgpack.unpackb(buf[offset + 4 : offset + 4 + size], raw=False))
        offset += 4 + size
    return found


def rewrite(path: Path, items: list[dict[str, Any]]) -> None:
    """Write records back with valid checksums: only a tag can tell what changed."""
    out = bytearray()
    for item in items:
        item["checksum"] = compute_checksum(item["sequence"], item["timestamp"],
                                            item["operation"], item["data"])
        body = msgpack.packb(item)
        out += HEADER.pack(len(body)) + body
    path.write_bytes(bytes(out))


def segment(root: Path) -> Path:
    (only,) = sorted((root / "wal").glob("*.wal"))
    return only


# -- keys ----------------------------------------------------------------------


def test_keys_are_read_as_hex_or_base64_and_the_first_seals() -> None:
    forms = [KEY_A.hex(), base64.b64encode(KEY_A).decode(),
             base64.urlsafe_b64encode(KEY_A).decode().rstrip("=")]
    for form in forms:
        assert parse_keys(form, "test") == [KEY_A]
    text = f"# current\n{KEY_B.hex()}\n{base64.b64encode(KEY_A).decode()}, # the old one\n"
    keyring = Keyring(parse_keys(text, "test"))
    assert keyring.ids == (key_id_of(KEY_B), key_id_of(KEY_A))
    assert keyring.current_id == key_id_of(KEY_B)
    expected = struct.unpack(">I", hashlib.sha256(KEY_ID_CONTEXT + KEY_B).digest()[:4])[0]
    assert keyring.current_id == expected


@pytest.mark.parametrize("bad", ["", "   # nothing\n", "00ff", "zz" * 32, KEY_A.hex()[:-1],
                                 base64.b64encode(bytes(31)).decode()])
def test_a_bad_key_is_a_clear_error(bad: str) -> None:
    with pytest.raises(InvalidArgument, match="key"):
        Keyring(parse_keys(bad, "$PROJECT_O_VAULT_KEY"))


def test_the_same_key_twice_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="same key twice"):
        ring(KEY_A, KEY_A)


def test_a_key_file_must_be_private_and_not_a_link(tmp_path: Path) -> None:
    key_file = tmp_path / "vault.key"
    key_file.write_text(KEY_A.hex() + "\n")
    key_file.chmod(0o644)
    with pytest.raises(InvalidArgument, match="chmod 600"):
        load_keyring(key_file, environ={})
    key_file.chmod(0o600)
    loaded = load_keyring(key_file, environ={})
    assert loaded is not None and loaded.ids == (key_id_of(KEY_A),)
    link = tmp_path / "link.key"
    link.symlink_to(key_file)
    with pytest.raises(InvalidArgument, match="symbolic link"):
        load_keyring(link, environ={})
    with pytest.raises(InvalidArgument, match="use one"):
        load_keyring(key_file, environ={KEY_ENV: KEY_B.hex()})
    from_env = load_keyring(None, environ={KEY_ENV: KEY_B.hex()})
    assert from_env is not None and from_env.ids == (key_id_of(KEY_B),)
    assert load_keyring(None, environ={}) is None


def test_nonces_count_up_from_a_random_start_and_wrap() -> None:
    nonces = NonceSequence(start=2**96 - 2)
    assert [nonces.take() for _ in range(3)] == [
        (2**96 - 2).to_bytes(12), (2**96 - 1).to_bytes(12), bytes(12)]
    assert NonceSequence().take() != NonceSequence().take()


# -- WAL -------------------------------------------------------------------------


def test_a_sealed_record_has_the_documented_layout(tmp_path: Path) -> None:
    with Vault.open(tmp_path, keyring=ring(KEY_A)) as vault:
        sequence = vault.append("memory_set", {"key": "code", "value": SECRET})
    raw = segment(tmp_path).read_bytes()
    assert SECRET.encode() not in raw and b"memory_set" not in raw
    (record,) = records(segment(tmp_path))
    assert list(record) == ["sequence", "timestamp", "operation", "data", "checksum"]
    assert record["operation"] is None and isinstance(record["data"], bytes)
    sealed = record["data"]
    key_id, nonce, ciphertext = sealed[:4], sealed[4:16], sealed[16:]
    assert struct.unpack(">I", key_id)[0] == key_id_of(KEY_A)
    position = struct.pack(WAL_POSITION, record["sequence"], record["timestamp"])
    plaintext = AESGCM(KEY_A).decrypt(nonce, ciphertext, key_id + nonce + WAL_CONTEXT + position)
    assert msgpack.unpackb(plaintext) == ["memory_set", {"key": "code", "value": SECRET}]
    assert record["sequence"] == sequence
    assert record["checksum"] == compute_checksum(sequence, record["timestamp"], None, sealed)


def test_the_documented_layout_is_the_one_in_docs() -> None:
    text = DESIGN.read_text(encoding="utf-8")
    section = text.split("### Encryption at rest", 1)[1].split("\n### ", 1)[0]
    for literal in (r'b"project-o wal record\0"', r'b"project-o checkpoint\0"',
                    r'"project-o vault key id\0"', f"`{WAL_POSITION}`",
                    f"`{CHECKPOINT_POSITION}`",
                    ("key id (u32 BE) ‖ nonce (12 bytes) ‖ AES-256-GCM(key, nonce, plaintext, AD)"
                     " ‖ tag (16)"), "AD     = key id ‖ nonce ‖ context ‖ position"):
        assert literal in section, literal
    for literal in (KEY_ID_CONTEXT, WAL_CONTEXT, CHECKPOINT_CONTEXT):
        assert literal.decode().replace("\0", r"\0") in section


def test_sealed_records_round_trip_and_plain_ones_stay_readable(tmp_path: Path) -> None:
    with Vault.open(tmp_path) as vault:  # a vault that starts plain ...
        vault.append("memory_set", {"key": "before", "value": 1})
    with Vault.open(tmp_path, keyring=ring(KEY_A)) as vault:  # ... and is sealed from now on
        vault.append("memory_set", {"key": "after", "value": SECRET})
        vault.append("memory_delete", {"key": "before"})
        point = vault.recover()
    assert [(e.operation, e.data) for e in point.entries] == [
        ("memory_set", {"key": "before", "value": 1}),
        ("memory_set", {"key": "after", "value": SECRET}),
        ("memory_delete", {"key": "before"}),
    ]
    operations = [r["operation"] for r in records(segment(tmp_path))]
    assert operations == ["memory_set", None, None]


@pytest.mark.parametrize("keyring", [None, ring(KEY_B)], ids=["no key", "wrong key"])
def test_a_missing_or_wrong_key_is_a_clear_error_and_nothing_is_cut(
    tmp_path: Path, keyring: Keyring | None
) -> None:
    with Vault.open(tmp_path, keyring=ring(KEY_A)) as vault:
        for n in range(5):
            vault.append("memory_set", {"key": n, "value": SECRET})
    path = segment(tmp_path)
    with open(path, "ab") as torn:  # a crash mid-write left half a record behind
        torn.write(b"\x00\x00\x01\x00\x85half")
    before = path.read_bytes()
    with pytest.raises(VaultKeyError, match=f"sealed with key {key_id_of(KEY_A):08x}"):
        Vault.open(tmp_path, keyring=keyring)
    assert path.read_bytes() == before  # not even the torn tail: the vault was not opened
    with Vault.open(tmp_path, keyring=ring(KEY_B, KEY_A)) as vault:
        assert [e.data["key"] for e in vault.recover().entries] == [0, 1, 2, 3, 4]
        assert vault.wal.torn_tail is not None


def test_an_altered_sealed_record_is_refused_by_recovery_and_reported_by_verify(
    tmp_path: Path,
) -> None:
    with Vault.open(tmp_path, keyring=ring(KEY_A)) as vault:
        for n in range(3):
            vault.append("memory_set", {"key": n, "value": SECRET})
    items = records(segment(tmp_path))
    sealed = bytearray(items[1]["data"])
    sealed[20] ^= 0x01  # one bit of ciphertext; the checksum is made to match again
    items[1]["data"] = bytes(sealed)
    rewrite(segment(tmp_path), items)
    before = segment(tmp_path).read_bytes()

    report = verify_vault(tmp_path, keyring=ring(KEY_A))
    assert not report.sound
    assert any("sealed record 2" in p and "tag does not verify" in p for p in report.problems)
    with (
        Vault.open(tmp_path, keyring=ring(KEY_A)) as vault,
        pytest.raises(WALCorruption, match="sealed record 2.*recovery stops here"),
    ):
        vault.recover()
    assert segment(tmp_path).read_bytes() == before  # refused, not repaired away


def test_a_sealed_record_shorter_than_a_seal_is_corruption_not_a_missing_key(
    tmp_path: Path,
) -> None:
    with Vault.open(tmp_path, keyring=ring(KEY_A)) as vault:
        for n in range(3):
            vault.append("memory_set", {"key": n, "value": SECRET})
    items = records(segment(tmp_path))
    items[1]["data"] = items[1]["data"][:7]  # cut inside the nonce; the checksum made to match
    rewrite(segment(tmp_path), items)
    with pytest.raises(WALCorruption, match="shorter than a seal"):
        Vault.open(tmp_path, keyring=ring(KEY_A))
    report = verify_vault(tmp_path, keyring=ring(KEY_A))
    assert any("shorter than a seal" in p for p in report.problems)


def test_records_swapped_between_positions_fail_their_tags(tmp_path: Path) -> None:
    with Vault.open(tmp_path, keyring=ring(KEY_A)) as vault:
        vault.append("memory_set", {"key": "balance", "value": 100})
        vault.append("memory_set", {"key": "balance", "value": 0})
    first, second = records(segment(tmp_path))
    first["data"], second["data"] = second["data"], first["data"]
    rewrite(segment(tmp_path), [first, second])
    report = scan(tmp_path / "wal", keyring=ring(KEY_A))
    assert [c.reason.split(":")[0] for c in report.corruption] == [
        "sealed record 1", "sealed record 2"]


def test_verify_without_the_key_checks_structure_but_is_not_sound(tmp_path: Path) -> None:
    with Vault.open(tmp_path, keyring=ring(KEY_A)) as vault:
        vault.append("memory_set", {"key": "k", "value": 1})
        vault.checkpoint({"agent_state": {"k": 1}})
        vault.append("memory_set", {"key": "k", "value": 2})
    name = f"{key_id_of(KEY_A):08x}"
    blind = verify_vault(tmp_path)
    assert not blind.sound and blind.entries == 2  # the active segment is never truncated
    assert any("need key" in p for p in blind.problems)
    assert any("not checked" in p for p in blind.problems)
    seeing = verify_vault(tmp_path, keyring=ring(KEY_A))
    assert seeing.sound, seeing.problems
    assert seeing.keys_in_use == {name: 3}  # two WAL records, one checkpoint


# -- checkpoints --------------------------------------------------------------------


def test_a_sealed_checkpoint_has_the_documented_layout(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path, keyring=ring(KEY_A))
    info = store.write({"agent_state": {"code": SECRET}}, last_sequence=7)
    raw = info.path.read_bytes()
    assert SECRET.encode() not in raw
    fields = struct.unpack_from(HEADER_BODY, raw)
    magic, version, flags, timestamp, id_bytes, size, uncompressed, digest, last = fields[:9]
    assert flags == FLAG_ENCRYPTED and last == 7
    sealed = raw[HEADER_SIZE:]
    assert len(sealed) == size and hashlib.sha256(sealed).digest() == digest
    key_id, nonce, ciphertext = sealed[:4], sealed[4:16], sealed[16:]
    assert struct.unpack(">I", key_id)[0] == key_id_of(KEY_A)
    position = struct.pack(CHECKPOINT_POSITION, magic, version, flags, timestamp, id_bytes,
                           uncompressed, last)
    frame = AESGCM(KEY_A).decrypt(nonce, ciphertext,
                                  key_id + nonce + CHECKPOINT_CONTEXT + position)
    payload = msgpack.unpackb(zstandard.ZstdDecompressor().decompress(frame))
    assert payload["agent_state"] == {"code": SECRET}
    assert store.read(info.path)[1]["agent_state"] == {"code": SECRET}


def test_a_checkpoint_without_its_key_never_falls_back(tmp_path: Path) -> None:
    plain = CheckpointStore(tmp_path)
    plain.write({"agent_state": {"v": "old"}}, last_sequence=1)
    CheckpointStore(tmp_path, keyring=ring(KEY_A)).write({"agent_state": {"v": "new"}},
                                                          last_sequence=2)
    for keyring in (None, ring(KEY_B)):
        with pytest.raises(VaultKeyError):
            CheckpointStore(tmp_path, keyring=keyring).latest_valid()  # not the old one
    newest = CheckpointStore(tmp_path, keyring=ring(KEY_A)).latest_valid()
    assert newest is not None and newest[1]["agent_state"] == {"v": "new"}


def test_an_altered_sealed_checkpoint_is_corrupt_and_recovery_falls_back(tmp_path: Path) -> None:
    store = CheckpointStore(tmp_path / "checkpoints", keyring=ring(KEY_A))
    store.write({"agent_state": {"v": "old"}}, last_sequence=1)
    newest = store.write({"agent_state": {"v": "new"}}, last_sequence=2)
    raw = bytearray(newest.path.read_bytes())
    # Claim the checkpoint covers more of the WAL: fix both hashes, the tag still binds it.
    raw[96:104] = struct.pack(">Q", 50)
    raw[224:256] = hashlib.sha256(bytes(raw[:224])).digest()
    newest.path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointCorrupt, match="tag does not verify"):
        store.read(newest.path)
    fallback = store.latest_valid()
    assert fallback is not None and fallback[1]["agent_state"] == {"v": "old"}
    report = verify_vault(tmp_path, keyring=ring(KEY_A))
    assert any("tag does not verify" in p for p in report.problems)


# -- rotation -------------------------------------------------------------------------


def test_rotation_reseals_on_the_next_checkpoint_and_the_old_key_retires(tmp_path: Path) -> None:
    small = {"segment_size": 2048}
    with Vault.open(tmp_path, keyring=ring(KEY_A), **small) as vault:
        for n in range(40):
            vault.append("memory_set", {"key": n, "value": SECRET})
        vault.checkpoint({"agent_state": {"n": 40}})
        vault.append("memory_set", {"key": "tail", "value": "under A"})
    old, new = f"{key_id_of(KEY_A):08x}", f"{key_id_of(KEY_B):08x}"

    rotated = ring(KEY_B, KEY_A)
    with Vault.open(tmp_path, keyring=rotated, **small) as vault:
        point = vault.recover()  # old records open with the old key
        assert point.state["agent_state"] == {"n": 40}
        assert [e.data["value"] for e in point.entries] == ["under A"]
        vault.append("memory_set", {"key": "next", "value": "under B"})
        vault.checkpoint({"agent_state": {"n": 42}})  # sealed with the new key
        assert CheckpointStore(tmp_path / "checkpoints").key_id(
            vault.checkpoints.latest_valid()[0].path) == key_id_of(KEY_B)  # type: ignore[index]
    in_use = verify_vault(tmp_path, keyring=rotated).keys_in_use
    assert set(in_use) == {old, new}  # the old checkpoint and WAL still need A

    with Vault.open(tmp_path, keyring=rotated, **small) as vault:
        for n in range(60):  # fills segments past the old ones
            vault.append("memory_set", {"key": n, "value": "more"})
        vault.checkpoint({"agent_state": {"n": 102}})
        vault.append("memory_set", {"key": "last", "value": 1})
        vault.checkpoint({"agent_state": {"n": 103}})  # both kept checkpoints are B's now
    report = verify_vault(tmp_path, keyring=rotated)
    assert report.sound, report.problems
    assert set(report.keys_in_use) == {new}  # A is no longer needed: drop it
    with Vault.open(tmp_path, keyring=ring(KEY_B), **small) as vault:
        assert vault.recover().state["agent_state"] == {"n": 103}


def test_nonces_never_repeat_across_records_and_reopens(tmp_path: Path) -> None:
    for _ in range(3):
        with WAL.open(tmp_path / "wal", keyring=ring(KEY_A)) as wal:
            for n in range(200):
                wal.append("op", n)
    nonces = [r["data"][4:16] for r in records(segment(tmp_path))]
    assert len(nonces) == 600 and len(set(nonces)) == 600


def test_sealing_stays_in_the_vault(tmp_path: Path) -> None:
    """What recovery hands on is opened: whoever restores from it never needs the key."""
    with Vault.open(tmp_path, keyring=ring(KEY_A)) as vault:
        vault.checkpoint({"agent_state": {"code": SECRET}})
        vault.append("memory_set", {"key": "k", "value": SECRET})
        point = vault.recover()
    assert point.state["agent_state"] == {"code": SECRET}
    assert point.entries[0].data == {"key": "k", "value": SECRET}


def test_a_plain_image_of_a_sealed_checkpoint_reads_without_the_key(tmp_path: Path) -> None:
    sealed_store = CheckpointStore(tmp_path / "sealed", keyring=ring(KEY_A))
    info = sealed_store.write({"agent_state": {"code": SECRET}}, last_sequence=9)
    image = sealed_store.plain_image(info.path)
    keyless = CheckpointStore(tmp_path / "keyless")
    copy = keyless.directory / info.path.name
    copy.write_bytes(image)
    read, payload = keyless.read(copy)  # what a process without the key can do with it
    assert (read.id, read.last_sequence, read.flags) == (info.id, 9, 0)
    assert payload["agent_state"] == {"code": SECRET}
    with pytest.raises(VaultKeyError):
        CheckpointStore(tmp_path / "sealed").plain_image(info.path)


def test_the_key_never_reaches_agent_processes() -> None:
    from project_o.runtime.sandbox import scrubbed_env

    env = scrubbed_env({KEY_ENV: KEY_A.hex(), "PATH": "/usr/bin", "HOME": "/root"})
    assert KEY_ENV not in env and KEY_A.hex() not in env.values()


def test_a_canary_overlay_in_a_sealed_vault_is_sealed_too(tmp_path: Path) -> None:
    import asyncio

    with Vault.open(tmp_path, keyring=ring(KEY_A)) as vault:
        overlay = vault.quarantine.create("v2", "exp-1", base_sequence=vault.last_sequence)
        asyncio.run(overlay.append("memory_set", {"key": "k", "value": SECRET}, ["req-1"]))
        overlay.settle("quarantined", "rolled back")
        on_disk = b"".join(p.read_bytes() for p in (tmp_path / "quarantine").rglob("*.wal"))
        assert on_disk and SECRET.encode() not in on_disk
        (write,) = vault.quarantine.writes(overlay.info.id)
        assert (write.operation, write.data, write.requests) == (
            "memory_set", {"key": "k", "value": SECRET}, ["req-1"])
        vault.quarantine.apply(overlay.info.id, vault.wal.submit_acknowledged)
        assert vault.recover().entries[-1].data == {"key": "k", "value": SECRET}
    keyless = Quarantine(tmp_path / "quarantine")
    with pytest.raises(VaultKeyError):
        list(keyless.writes(overlay.info.id))
