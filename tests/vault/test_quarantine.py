"""Overlays of canary writes: durable, listed, settled, applied only when asked."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from project_o.errors import OverlayNotApplicable, UnknownOverlay, VaultError, VaultKeyError
from project_o.vault import Vault
from project_o.vault import quarantine as quarantine_module
from project_o.vault.quarantine import OVERLAY_WRITE, Overlay, Quarantine, overlay_payload
from project_o.vault.sealing import KEY_ENV, Keyring
from project_o.vault.wal_record import pack_payload


def append_all(overlay: Overlay, writes: list[tuple[str, dict[str, object], list[str]]]) -> None:
    async def run() -> None:
        for operation, data, requests in writes:
            await overlay.append(operation, data, requests)

    asyncio.run(run())


@pytest.fixture
def vault(tmp_path: Path) -> Vault:
    opened = Vault.open(tmp_path / "vault")
    yield opened  # type: ignore[misc]
    opened.close()


def test_an_overlay_keeps_the_writes_apart_until_it_is_applied(vault: Vault) -> None:
    vault.append("memory_set", {"key": "a", "value": "main"})
    overlay = vault.quarantine.create("v2", "e1", base_sequence=vault.last_sequence)
    append_all(overlay, [("memory_set", {"key": "a", "value": "canary"}, ["r1"]),
                         ("memory_delete", {"key": "b"}, ["r2"])])
    assert vault.last_sequence == 1  # the agent's WAL is untouched
    [listed] = vault.quarantine.overlays()
    assert (listed.id, listed.status, listed.version, listed.experiment_id) == (
        overlay.info.id, "open", "v2", "e1")
    settled = overlay.settle("quarantined", "rolled_back: worse on latency")
    assert (settled.status, settled.writes) == ("quarantined", 2)
    assert vault.quarantine.get(settled.id).reason == "rolled_back: worse on latency"

    applied = vault.quarantine.apply(settled.id, vault.wal.submit_acknowledged)
    assert applied.status == "applied" and applied.reason == "applied by hand (2 writes)"
    entries = [(e.operation, e.data) for e in vault.recover().entries]
    assert entries == [("memory_set", {"key": "a", "value": "main"}),
                       ("memory_set", {"key": "a", "value": "canary"}),
                       ("memory_delete", {"key": "b"})]
    with pytest.raises(OverlayNotApplicable, match="only a quarantined overlay"):
        vault.quarantine.apply(settled.id, vault.wal.submit_acknowledged)  # never twice
    assert vault.last_sequence == 3


def test_writes_are_numbered_after_the_canarys_restore_point(vault: Vault) -> None:
    overlay = vault.quarantine.create("v2", "e1", base_sequence=500)
    append_all(overlay, [("memory_set", {"key": str(i), "value": i}, []) for i in range(3)])
    overlay.settle("quarantined", "rejected")
    assert [w.sequence for w in vault.quarantine.writes(overlay.info.id)] == [501, 502, 503]


def test_an_open_overlay_cannot_be_applied_and_unknown_ids_are_refused(vault: Vault) -> None:
    overlay = vault.quarantine.create("v2", "e1", base_sequence=0)
    with pytest.raises(OverlayNotApplicable, match="is open"):
        vault.quarantine.apply(overlay.info.id, vault.wal.submit_acknowledged)
    overlay.close()
    for bad in ("nope", "../wal", ""):
        with pytest.raises(UnknownOverlay):
            vault.quarantine.get(bad)


def test_a_torn_tail_is_an_unacknowledged_write_but_damage_inside_is_an_error(
        vault: Vault) -> None:
    overlay = vault.quarantine.create("v2", "e1", base_sequence=0)
    append_all(overlay, [("memory_set", {"key": str(i), "value": i}, []) for i in range(3)])
    overlay.settle("quarantined", "rolled back")
    [segment] = sorted((overlay.directory / "wal").iterdir())
    intact = segment.read_bytes()
    segment.write_bytes(intact + b"\x00\x00\x01\x00\x85partial")  # a write cut mid-record
    assert len(list(vault.quarantine.writes(overlay.info.id))) == 3
    damaged = bytearray(intact)
    damaged[len(intact) // 2] ^= 0xFF  # inside the second record: not a torn tail
    segment.write_bytes(bytes(damaged))
    with pytest.raises(VaultError, match=f"overlay {overlay.info.id}"):
        list(vault.quarantine.writes(overlay.info.id))


CHILD = textwrap.dedent("""
    import asyncio, sys
    from pathlib import Path
    from project_o.vault.quarantine import Quarantine

    async def main():
        overlay = Quarantine(Path(sys.argv[1])).create("v2", "e1", base_sequence=10)
        n = 0
        while True:
            sequence = await overlay.append("memory_set", {"key": f"k{n}", "value": n},
                                            [f"r{n}"])
            print(sequence, flush=True)
            n += 1

    asyncio.run(main())
""")


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(5))
def test_kill_9_mid_canary_loses_no_acknowledged_write_and_the_next_start_quarantines(
        tmp_path: Path, seed: int) -> None:
    directory = tmp_path / "quarantine"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(directory)],
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    acked = [int(child.stdout.readline())]  # it is writing
    time.sleep(random.Random(seed).uniform(0.0, 0.2))
    child.send_signal(signal.SIGKILL)
    acked += [int(line) for line in child.stdout.read().split()]
    child.wait()
    quarantine = Quarantine(directory)
    [settled] = quarantine.settle_open("supervisor restarted mid-experiment")
    assert settled.status == "quarantined"
    writes = list(quarantine.writes(settled.id))
    assert [w.sequence for w in writes] == list(range(11, 11 + len(writes)))
    assert set(acked) <= {w.sequence for w in writes}  # every acknowledged write survived
    assert settled.writes == len(writes) >= len(acked)
    for write in writes:
        n = write.sequence - 11
        assert (write.data, write.requests) == ({"key": f"k{n}", "value": n}, [f"r{n}"])


def test_writes_shown_as_json_carry_bytes_as_base64(vault: Vault) -> None:
    overlay = vault.quarantine.create("v2", "e1", base_sequence=0)
    append_all(overlay, [("memory_set", {"key": "k", "value": [b"\x00\xff", {"n": b"x"}]},
                          ["r1"])])
    overlay.settle("quarantined", "rejected")
    [write] = vault.quarantine.writes(overlay.info.id)
    assert write.to_dict()["data"]["value"][0] == b"\x00\xff"  # as stored
    assert write.to_json() == {
        "sequence": 1, "operation": "memory_set", "requests": ["r1"],
        "data": {"key": "k", "value": [{"base64": "AP8="}, {"n": {"base64": "eA=="}}]}}
    json.dumps(write.to_json())


def test_settling_an_overlay_left_open_needs_no_key(tmp_path: Path) -> None:
    key = Keyring([bytes(range(32))])
    sealed = Quarantine(tmp_path / "quarantine", keyring=key)
    overlay = sealed.create("v2", "e1", base_sequence=0)
    append_all(overlay, [("memory_set", {"key": str(i), "value": i}, []) for i in range(3)])
    overlay.close()  # the supervisor died: the overlay is still "open"
    keyless = Quarantine(tmp_path / "quarantine")  # e.g. its key was rotated out since
    [settled] = keyless.settle_open("supervisor restarted mid-experiment")
    assert (settled.status, settled.writes) == ("quarantined", 3)
    with pytest.raises(VaultKeyError):
        list(keyless.writes(settled.id))  # reading them still needs the key
    assert [w.data["value"] for w in sealed.writes(settled.id)] == [0, 1, 2]


def test_the_cli_shows_and_applies_a_sealed_vaults_writes_with_a_key_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from project_o.cli import main

    monkeypatch.delenv(KEY_ENV, raising=False)
    key = bytes(range(32))
    key_file = tmp_path / "vault.key"
    key_file.write_text(key.hex() + "\n")
    key_file.chmod(0o600)
    with Vault.open(tmp_path / "vault", keyring=Keyring([key])) as vault:
        overlay = vault.quarantine.create("v2", "e1", base_sequence=vault.last_sequence)
        append_all(overlay, [("memory_set", {"key": "a", "value": "canary"}, ["r1"])])
        overlay_id = overlay.settle("quarantined", "rejected").id
    directory = str(tmp_path / "vault")

    assert main(["vault", "quarantine", directory, "--show", overlay_id, "--json"]) == 1
    assert "sealed with key" in capsys.readouterr().err  # no key: a clear error
    assert main(["vault", "quarantine", directory, "--show", overlay_id, "--json",
                 "--vault-key-file", str(key_file)]) == 0
    shown = json.loads(capsys.readouterr().out)["writes_shown"]
    assert [w["data"] for w in shown] == [{"key": "a", "value": "canary"}]
    assert main(["vault", "quarantine", directory, "--apply", overlay_id,
                 "--vault-key-file", str(key_file)]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "applied"
    with Vault.open(tmp_path / "vault", keyring=Keyring([key])) as vault:
        assert [e.data for e in vault.recover().entries] == [{"key": "a", "value": "canary"}]


@pytest.mark.parametrize("data", [{"key": "k", "value": [b"\x00", 1.5, None]}, "x" * 70_000, 7])
def test_an_overlay_record_built_from_a_packed_write_is_the_packed_record(data: object) -> None:
    requests = ["r1", "r2"]
    assert overlay_payload(pack_payload("memory_set", data), requests) == pack_payload(
        OVERLAY_WRITE, {"operation": "memory_set", "data": data, "requests": requests})


def test_apply_queues_writes_in_windows_and_keeps_their_order(
        vault: Vault, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(quarantine_module, "_APPLY_WINDOW", 2)
    overlay = vault.quarantine.create("v2", "e1", base_sequence=0)
    append_all(overlay, [("memory_set", {"key": "k", "value": i}, []) for i in range(7)])
    overlay.settle("quarantined", "rejected")
    vault.append("memory_set", {"key": "k", "value": "main"})
    vault.quarantine.apply(overlay.info.id, vault.wal.submit_acknowledged)
    assert [e.data["value"] for e in vault.recover().entries] == ["main", *range(7)]
    assert vault.last_sequence == 8
