"""kill -9 the supervisor under write load: the heart restores it, nothing acked is lost.

Jepsen-style: writer threads send memory writes with unique keys and note
each one the API acknowledged (HTTP 200). The supervisor is SIGKILLed at
random moments; the heart restarts it and it recovers from the vault.
At the end every acknowledged write must read back with its value.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.supervisor.harness import CHAOS_AGENT, FAST_HEARTBEAT, TOKEN, Stack

pytestmark = pytest.mark.slow

#: supervisor kills per run; bounded so CI stays fast
KILLS = 3
WRITERS = 4


def _writer(stack: Stack, name: str, acked: list[str], attempted: list[int],
            stop: threading.Event) -> None:
    n = 0
    while not stop.is_set():
        key = f"{name}-{n}"
        n += 1
        attempted[0] += 1
        try:
            state = stack._state()
            if state is None:
                continue
            response = httpx.post(
                f"http://127.0.0.1:{state['port']}/v1/requests",
                json={"input": {"do": "set", "key": key, "value": n}},
                headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30,
            )
        except httpx.HTTPError:
            time.sleep(0.01)
            continue
        if response.status_code == 200:
            acked.append(key)


def test_supervisor_kill_9_under_write_load_loses_no_acked_write(tmp_path: Path) -> None:
    rng = random.Random(1234)
    stack = Stack(tmp_path / "vault", ["--agent", str(CHAOS_AGENT), *FAST_HEARTBEAT], heart=True)
    acked: list[str] = []
    attempted = [0]
    stop = threading.Event()
    writers = [threading.Thread(target=_writer, args=(stack, f"w{i}", acked, attempted, stop))
               for i in range(WRITERS)]
    try:
        for thread in writers:
            thread.start()
        for _ in range(KILLS):
            time.sleep(rng.uniform(0.3, 1.0))
            old = stack.supervisor_pid()
            os.kill(old, signal.SIGKILL)
            stack.wait_ready(not_pid=old)
        time.sleep(0.3)
        stop.set()
        for thread in writers:
            thread.join(timeout=60)
        lost = [key for key in acked if not _reads_back(stack, key)]
        print(f"attempted={attempted[0]} acknowledged={len(acked)} lost={len(lost)}")
        assert len(acked) > 0
        assert lost == []
    finally:
        stop.set()
        stack.stop()


def _reads_back(stack: Stack, key: str) -> bool:
    expected = int(key.rsplit("-", 1)[1]) + 1
    response = stack.do("get", key=key)
    return response.status_code == 200 and response.json()["output"] == {"value": expected}
