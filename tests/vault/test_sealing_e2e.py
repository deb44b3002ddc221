"""A real supervisor on a sealed vault: kill -9 under writes loses nothing, nothing is in clear.

Writers send memory writes with unique keys while the supervisor is
SIGKILLed (the heart restarts it, and it recovers from the sealed WAL).
Then: every acknowledged write reads back; no key or value is on disk in
clear; `project-o vault verify` is sound with the key and refuses to call
the vault sound without it; and a supervisor started without the key
stops with a clear error, touching nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from project_o.vault.sealing import KEY_ENV
from tests.supervisor.harness import CHAOS_AGENT, FAST_HEARTBEAT, TOKEN, Stack

pytestmark = pytest.mark.slow

KILLS = 2
WRITERS = 3
#: writes per writer: well under the 1,000 acknowledged writes that trigger a checkpoint,
#: so every restart recovers from the sealed WAL
WRITES = 40
ATTEMPTS = 50
KEY = os.urandom(32).hex()


def _writer(stack: Stack, name: str, acked: list[str], stop: threading.Event) -> None:
    for n in range(WRITES):
        for _ in range(ATTEMPTS):  # a write cut off by a kill is tried again (same value)
            if stop.is_set():
                return
            if _write(stack, f"{name}-{n}", n):
                acked.append(f"{name}-{n}")
                break
            stop.wait(0.05)


def _write(stack: Stack, key: str, value: int) -> bool:
    state = stack._state()
    if state is None:
        return False
    try:
        response = httpx.post(
            f"http://127.0.0.1:{state['port']}/v1/requests",
            json={"input": {"do": "set", "key": key, "value": value}},
            headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30,
        )
    except httpx.HTTPError:
        return False
    return response.status_code == 200


def _verify(vault: Path, key: str | None) -> tuple[int, dict[str, object]]:
    env = {k: v for k, v in os.environ.items() if k != KEY_ENV}
    if key:
        env[KEY_ENV] = key
    done = subprocess.run([sys.executable, "-m", "project_o.cli", "vault", "verify", "--json",
                           str(vault)], env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    return done.returncode, json.loads(done.stdout)


def _fingerprint(vault: Path) -> dict[str, str]:
    return {str(p.relative_to(vault)): hashlib.sha256(p.read_bytes()).hexdigest()
            for sub in ("wal", "checkpoints") for p in sorted((vault / sub).iterdir())}


def test_a_sealed_vault_survives_kill_9_and_keeps_its_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    vault, rng = tmp_path / "vault", random.Random(7)
    monkeypatch.setenv(KEY_ENV, KEY)
    stack = Stack(vault, ["--agent", str(CHAOS_AGENT), *FAST_HEARTBEAT], heart=True)
    acked: list[str] = []
    stop = threading.Event()
    writers = [threading.Thread(target=_writer, args=(stack, f"w{i}", acked, stop))
               for i in range(WRITERS)]
    try:
        for thread in writers:
            thread.start()
        for _ in range(KILLS):
            stop.wait(rng.uniform(0.2, 0.6))
            old = stack.supervisor_pid()
            os.kill(old, signal.SIGKILL)
            stack.wait_ready(not_pid=old)
        for thread in writers:
            thread.join(timeout=120)
        lost = [key for key in acked if stack.do("get", key=key).json().get("output")
                != {"value": int(key.rsplit("-", 1)[1])}]
        print(f"sealed vault: acknowledged={len(acked)} lost={len(lost)} kills={KILLS}")
        assert acked and lost == []
    finally:
        stop.set()
        stack.stop()  # the final checkpoint is written sealed

    on_disk = b"".join(p.read_bytes() for sub in ("wal", "checkpoints")
                       for p in (vault / sub).iterdir())
    assert acked[0].encode() not in on_disk and b"w0-1" not in on_disk
    assert list((vault / "checkpoints").glob("*.ockpt"))

    status, report = _verify(vault, KEY)
    assert status == 0, report["problems"]
    assert report["keys_in_use"]
    status, report = _verify(vault, None)
    assert status == 1 and any("not checked" in p for p in report["problems"])

    monkeypatch.delenv(KEY_ENV)
    before = _fingerprint(vault)
    with pytest.raises(RuntimeError, match="sealed with key"):
        Stack(vault, ["--agent", str(CHAOS_AGENT), *FAST_HEARTBEAT])
    assert _fingerprint(vault) == before  # nothing truncated, nothing rewritten
