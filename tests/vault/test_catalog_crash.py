"""kill -9 a process writing to the catalog: every committed row survives."""

from __future__ import annotations

import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from project_o.vault.catalog import Catalog

_WRITER = r"""
import os, sys
from project_o.vault.catalog import Catalog

catalog = Catalog.open(sys.argv[1])
round_ = sys.argv[2]
n = 0
while True:
    n += 1
    event = catalog.record_event("tick", f"round-{round_}", data={"n": n, "pad": "x" * 500})
    # only after the commit returned; one write() so a kill cannot split the line
    os.write(1, f"{event} {n}\n".encode())
"""

_KILL_ROUNDS = 3
#: acknowledged writes to wait for before the kill can come
_MIN_ACKED = 20


@pytest.mark.slow
def test_committed_rows_survive_kill_minus_nine(tmp_path: Path) -> None:
    path = tmp_path / "catalog.sqlite"
    rng = random.Random(7)
    acknowledged: dict[int, int] = {}
    for round_ in range(_KILL_ROUNDS):
        child = subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(path), str(round_)],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert child.stdout is not None
            for _ in range(_MIN_ACKED):
                event, n = map(int, child.stdout.readline().split())
                acknowledged[event] = n
            time.sleep(rng.uniform(0.0, 0.05))
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=10)
        assert child.stdout is not None
        for line in child.stdout.read().splitlines():
            event, n = map(int, line.split())
            acknowledged[event] = n

        with Catalog.open(path) as catalog:
            stored = {e.id: e.data["n"] for e in catalog.recent_events(limit=1_000_000)}
        missing = {event for event in acknowledged if event not in stored}
        assert not missing, f"acknowledged events lost after kill -9: {sorted(missing)[:5]}"
        assert all(stored[event] == n for event, n in acknowledged.items())
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
