"""kill -9 a writer at random moments; every acknowledged entry must survive.

Each round starts ``wal_child.py`` on the same WAL directory (it repairs
whatever the previous kill left), lets several threads append in sync mode,
and SIGKILLs it at a moment drawn from ``random.Random(SEED)``: sometimes
while it is still opening, mostly in the middle of appends and rollovers
(segments are small). The parent then reopens the WAL itself and checks,
Jepsen-style:

* every acknowledged entry is present at its sequence with its exact data;
* sequences run 1, 2, 3... with no gap across segments;
* nothing is present that was not submitted (each entry's data is derived
  from (run, writer, n) and was announced on stdout before the append);
* each writer's entries form an unbroken prefix 0..k (at most one more
  than it saw acknowledged: the one in flight when it was killed).

The sealed variant runs the same rounds with encryption at rest on, and
rotates the key every few rounds (the new key first, the old ones kept):
records of every key must survive, opened with the keyring.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from project_o.vault.sealing import KEY_ENV, Keyring, parse_keys
from project_o.vault.wal import WAL, scan

from .wal_child import digest, make_data

SEED = 20240611
#: Bounded for a 2-core CI box: ~0.5 s per round.
ROUNDS = int(os.environ.get("PROJECT_O_WAL_CRASH_ROUNDS", "20"))
THREADS = 6
#: Small segments, so kills land on rollovers too.
SEGMENT_SIZE = 16 * 1024
#: Most kills wait for "R" (WAL open) and then a random delay up to this;
#: the rest fire at a random time since spawn, possibly mid-recovery.
MAX_DELAY_S = 0.25
KILL_DURING_OPEN_SHARE = 0.2
CHILD = Path(__file__).with_name("wal_child.py")
#: the sealed variant starts a new key every this many rounds
ROTATE_EVERY = 5


@dataclass
class History:
    """What the child said: invocations and acknowledgements."""

    invoked: set[tuple[int, int, int]] = field(default_factory=set)
    acked: dict[int, tuple[int, int, int, str]] = field(default_factory=dict)  # seq -> ...
    torn_tails: int = 0  # repaired by the parent's reopen after a kill

    def absorb(self, output: str) -> None:
        for line in output.splitlines():
            parts = line.split()
            if parts[:1] == ["I"]:
                self.invoked.add((int(parts[1]), int(parts[2]), int(parts[3])))
            elif parts[:1] == ["A"]:
                run, writer, n, seq = map(int, parts[1:5])
                assert seq not in self.acked, f"sequence {seq} acknowledged twice"
                self.acked[seq] = (run, writer, n, parts[5])


def crash_once(directory: Path, run: int, rng: random.Random, keys: str = "") -> str:
    """Run the child for a random while, kill -9 it, return everything it printed.

    ``keys``: the child's ``$PROJECT_O_VAULT_KEY`` (empty: records are plain).
    """
    env = {k: v for k, v in os.environ.items() if k != KEY_ENV}
    if keys:
        env[KEY_ENV] = keys
    child = subprocess.Popen(
        [
            sys.executable,
            str(CHILD),
            str(directory),
            str(run),
            str(THREADS),
            "--segment-size",
            str(SEGMENT_SIZE),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert child.stdout is not None
    chunks: list[bytes] = []
    ready = threading.Event()

    def drain() -> None:  # keep the pipe empty so the child never blocks on stdout
        assert child.stdout is not None
        while chunk := child.stdout.read1(65536):
            chunks.append(chunk)
            if chunk.startswith(b"R\n") or b"\nR\n" in chunk:
                ready.set()

    reader = threading.Thread(target=drain)
    reader.start()
    if rng.random() < KILL_DURING_OPEN_SHARE:
        time.sleep(rng.uniform(0.0, 0.3))
    else:
        assert ready.wait(30), "child never opened the WAL"
        time.sleep(rng.uniform(0.0, MAX_DELAY_S))
    child.send_signal(signal.SIGKILL)
    child.wait(30)
    reader.join(30)  # the only reader of stdout: it runs to EOF
    assert child.stderr is not None
    stderr = child.stderr.read()
    child.stdout.close()
    child.stderr.close()
    assert child.returncode == -signal.SIGKILL, stderr.decode()
    output = b"".join(chunks).decode()
    return output[: output.rfind("\n") + 1]  # a cut-off last line is not evidence


def check(directory: Path, history: History, keyring: Keyring | None = None) -> int:
    """Reopen and verify; return how many acknowledged entries are missing."""
    with WAL.open(directory, segment_size=SEGMENT_SIZE, keyring=keyring) as wal:
        history.torn_tails += wal.torn_tail is not None
        entries = list(wal.replay())
    assert [e.sequence for e in entries] == list(range(1, len(entries) + 1))
    by_seq = {e.sequence: e.data for e in entries}
    lost = 0
    for seq, (run, writer, n, fingerprint) in history.acked.items():
        data = by_seq.get(seq)
        if data is None:
            lost += 1
            continue
        assert data == make_data(run, writer, n), f"sequence {seq} holds the wrong entry"
        assert digest(data) == fingerprint
    prefixes: dict[tuple[int, int], list[int]] = {}
    for data in by_seq.values():
        key = (data["run"], data["w"], data["n"])
        assert data == make_data(*key), "an entry no writer produced (phantom)"
        assert key in history.invoked, f"{key} is present but was never submitted"
        prefixes.setdefault(key[:2], []).append(key[2])
    for (run, writer), ns in prefixes.items():
        assert sorted(ns) == list(range(len(ns))), f"writer {run}/{writer} has holes"
    return lost


@pytest.mark.slow
@pytest.mark.parametrize("sealed", [False, True], ids=["plain", "sealed"])
def test_kill_minus_nine_never_loses_an_acknowledged_entry(tmp_path: Path, sealed: bool) -> None:
    rng = random.Random(SEED)
    directory = tmp_path / "wal"
    history = History()
    lost = 0
    keys: list[str] = []
    for run in range(ROUNDS):
        if sealed and run % ROTATE_EVERY == 0:
            keys.insert(0, os.urandom(32).hex())  # rotate: the new key seals from now on
        spec = " ".join(keys)
        history.absorb(crash_once(directory, run, rng, spec))
        keyring = Keyring(parse_keys(spec, "the test's keys")) if spec else None
        lost = check(directory, history, keyring)
        assert lost == 0, f"round {run}: {lost} acknowledged entries lost"
    with WAL.open(directory, keyring=keyring) as wal:
        present = wal.last_sequence
    if sealed:  # every record on disk is sealed, each under one of the rotated keys
        report = scan(directory, keyring=keyring)
        assert report.sound and not report.unopened
        assert sum(report.sealed.values()) == report.entries == present
        assert len(report.sealed) == len(keys)
    print(
        f"\nWAL crash test ({'sealed' if sealed else 'plain'}): {ROUNDS} kill -9 rounds, "
        f"attempted={len(history.invoked)} "
        f"acknowledged={len(history.acked)} present={present} "
        f"recovered-unacknowledged={present - len(history.acked)} "
        f"torn-tails-repaired={history.torn_tails} lost={lost}"
    )
    assert len(history.acked) > 0
