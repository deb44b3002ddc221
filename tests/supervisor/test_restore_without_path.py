"""An instance is restored from a checkpoint it never sees the path of.

The checkpoint reaches it as a sealed in-memory copy passed with the
``restore`` frame; after ``kill -9`` of the main the next one is restored
the same way, and everything written is there.
"""

from __future__ import annotations

import os
import secrets
import signal
import time
from pathlib import Path

import pytest

from project_o.vault.checkpoint import HEADER_SIZE, decode_header
from tests.processes import assert_gone
from tests.supervisor.harness import FAST_HEARTBEAT, ROOT, Stack

AGENT = ROOT / "tests" / "fixtures" / "secrets_agent.py"


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted-at-rest"])
def test_kill_9_of_the_main_restores_from_a_sealed_checkpoint_copy(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, encrypted: bool) -> None:
    """Encrypted at rest too: the instance gets an unsealed copy, never the key."""
    if encrypted:
        monkeypatch.setenv("PROJECT_O_VAULT_KEY", secrets.token_hex(32))
    vault = tmp_path / "vault"
    args = ["--agent", str(AGENT), "--no-standby", *FAST_HEARTBEAT]
    written = {f"k{i}": i for i in range(20)}
    first = Stack(vault, args)
    try:
        for key, value in written.items():
            assert first.do("set", key=key, value=value).status_code == 200
    finally:
        first.stop()  # a clean stop checkpoints the main's state
    checkpoints = list((vault / "checkpoints").glob("*.ockpt"))
    assert checkpoints, "no checkpoint to restore from"
    assert all(decode_header(path.read_bytes()[:HEADER_SIZE], path).sealed == encrypted
               for path in checkpoints)

    stack = Stack(vault, args)
    try:
        for i in range(20, 25):  # in the WAL after the checkpoint
            written[f"k{i}"] = i
            assert stack.do("set", key=f"k{i}", value=i).status_code == 200
        old = stack.main_pid()
        os.kill(old, signal.SIGKILL)
        assert_gone(old, "the killed main")
        new = _new_main(stack, old)
        values = stack.do("get", keys=list(written)).json()["output"]["values"]
        assert values == written
        links = stack.do("fds").json()["output"]["links"]
        assert stack.main_pid() == new
        assert not [link for link in links if f"{vault}/" in link or "memfd:" in link], links
    finally:
        stack.stop()


def _new_main(stack: Stack, old: int, timeout: float = 30.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        mains = [i for i in stack.status()["instances"] if i["role"] == "main"]
        if mains and mains[0]["pid"] != old:
            return int(mains[0]["pid"])
        time.sleep(0.05)
    raise AssertionError("no new main after the kill")
