"""kill -9 a process in the middle of writing checkpoints: nothing torn is ever trusted."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from project_o.errors import CheckpointCorrupt
from project_o.vault.atomic import is_temp_name
from project_o.vault.checkpoint import CheckpointStore

_WRITER = r"""
import os, sys
from pathlib import Path
from project_o.vault.checkpoint import CheckpointStore

store = CheckpointStore(Path(sys.argv[1]), keep=2)
sequence = int(sys.argv[2])
# incompressible bytes, so the write and fsync take long enough to be interrupted
blob = os.urandom(4 << 20)
while True:
    sequence += 1
    state = {"agent_state": {"n": sequence}, "memory_blocks": {"blob": blob}}
    store.write(state, last_sequence=sequence)
    # only after write() returned: acknowledged; one write() so a kill cannot split it
    os.write(1, f"{sequence}\n".encode())
"""

_KILL_ROUNDS = 8


@pytest.mark.slow
def test_kill_minus_nine_mid_checkpoint_keeps_the_last_acknowledged(tmp_path: Path) -> None:
    rng = random.Random(99)
    acknowledged = 0
    temps_seen = 0
    for _ in range(_KILL_ROUNDS):
        child = subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(tmp_path), str(acknowledged)],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert child.stdout is not None
            acknowledged = int(child.stdout.readline())
            time.sleep(rng.uniform(0.0, 0.1))
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=10)
            assert child.stdout is not None
            lines = child.stdout.read().split()
            acknowledged = max([acknowledged, *map(int, lines)])
        temps_seen += sum(is_temp_name(p.name) for p in tmp_path.iterdir())

        store = CheckpointStore(tmp_path, keep=2)
        outcomes = store.scan()
        assert not [o for _, o in outcomes if isinstance(o, CheckpointCorrupt)]
        newest = store.latest_valid()
        assert newest is not None
        # never behind what was acknowledged; at most the one write that was
        # renamed into place just before the kill, without its ack printed
        assert newest[0].last_sequence in (acknowledged, acknowledged + 1)
        assert newest[1]["agent_state"] == {"n": newest[0].last_sequence}
        acknowledged = newest[0].last_sequence
    # the next write sweeps up whatever temp files the kills left behind
    CheckpointStore(tmp_path).write({}, last_sequence=acknowledged + 1)
    assert not [p for p in tmp_path.iterdir() if is_temp_name(p.name)]
    print(f"kill rounds that left a temp file: {temps_seen}/{_KILL_ROUNDS}")
