"""`project-o run` with no --agent serves the assistant; it forgets nothing across kill -9."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.supervisor.harness import FAST_HEARTBEAT, Stack

pytestmark = pytest.mark.slow


def test_default_agent_remembers_through_a_kill_and_a_restart(tmp_path: Path) -> None:
    vault = tmp_path / "vault"
    stack = Stack(vault, FAST_HEARTBEAT, heart=True)
    try:
        assert stack.ask("remember the capital of France is Paris").status_code == 200
        os.kill(stack.main_pid(), signal.SIGKILL)
        answer = stack.ask("what is the capital of France?").json()["output"]
        assert answer["answer"] == "the capital of France is Paris"
        old = stack.supervisor_pid()
        os.kill(old, signal.SIGKILL)
        stack.wait_ready(not_pid=old)
        answer = stack.ask("what is the capital of France?").json()["output"]
        assert answer["citations"][0]["text"] == "the capital of France is Paris"
    finally:
        stack.stop()
