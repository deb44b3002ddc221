"""`project-o run` that cannot start: one message, a status that says why, no restart.

Each case runs the real command (CLI -> heart -> supervisor) the way a new
user would, and checks what they see: the process ends on its own, exits
with the documented status, prints one message naming the cause, and the
heart does not restart the supervisor (no "is up", no second attempt).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from project_o.supervisor.startup import (
    EXIT_AGENT_BROKEN,
    EXIT_NO_AGENT,
    EXIT_PORT_UNAVAILABLE,
    EXIT_USAGE,
    EXIT_VAULT_UNAVAILABLE,
)
from tests.supervisor.harness import TOKEN, Stack

#: deadlock guard: a restart loop would run past it; not a speed limit
GUARD_S = 120.0


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    vault = tmp_path / "vault"
    return subprocess.run(
        [sys.executable, "-m", "project_o.cli", "run", "--vault", str(vault), *args],
        env={**os.environ, "PROJECT_O_TOKEN": TOKEN}, stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=GUARD_S, check=False,
    )


def _assert_one_message(result: subprocess.CompletedProcess[str], *expected: str) -> str:
    output = result.stdout + result.stderr
    messages = [line for line in output.splitlines() if line.startswith("project-o")]
    assert len(messages) == 1, output  # one message ...
    assert "Traceback" not in output, output  # ... not a stack of tracebacks
    assert "is up" not in output and "restarts:" not in output, output  # never restarted
    for part in expected:
        assert part in messages[0], output
    return messages[0]


def test_a_typo_in_the_agent_path(tmp_path: Path) -> None:
    result = _run(tmp_path, "--agent", str(tmp_path / "my_agnet.py"), "--port", "0")
    assert result.returncode == EXIT_NO_AGENT, result.stderr
    _assert_one_message(result, "no agent at", "my_agnet.py", "check the path")
    assert not (tmp_path / "vault").exists()  # refused before anything was created


def test_an_agent_with_a_syntax_error_and_no_version_to_fall_back_to(tmp_path: Path) -> None:
    agent = tmp_path / "broken.py"
    agent.write_text("from project_o import Agent\nagent = Agent('x')\ndef (:\n")
    result = _run(tmp_path, "--agent", str(agent), "--port", "0")
    assert result.returncode == EXIT_AGENT_BROKEN, result.stderr
    _assert_one_message(result, "cannot start the agent", "SyntaxError", "broken.py, line 3")
    assert "def (:" in result.stderr  # the agent's own line is shown, our loader's frames not
    assert "loader.py" not in result.stderr


def test_a_vault_another_run_holds(tmp_path: Path) -> None:
    holder = Stack(tmp_path / "vault", ["--no-standby"])
    try:
        result = _run(tmp_path, "--port", "0")
        assert result.returncode == EXIT_VAULT_UNAVAILABLE, result.stderr
        _assert_one_message(result, "in use by the supervisor pid", str(holder.supervisor_pid()))
        assert holder.status()["tree"]["children"][0]["status"] == "running"  # left alone
        assert holder.ask("still here").status_code == 200
    finally:
        holder.stop()


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_a_port_in_use(tmp_path: Path, taken_port: int) -> None:
    result = _run(tmp_path, "--port", str(taken_port), "--no-standby")
    assert result.returncode == EXIT_PORT_UNAVAILABLE, result.stderr
    _assert_one_message(result, f"127.0.0.1:{taken_port}", "Address already in use",
                        "pick another port")


@pytest.mark.parametrize("options", [
    ["--heartbeat-interval", "0.01"],
    ["--heartbeat-interval", "2", "--heartbeat-timeout", "1"],
    ["--port", "70000"],
])
def test_bad_options(tmp_path: Path, options: list[str]) -> None:
    result = _run(tmp_path, *options)
    assert result.returncode == EXIT_USAGE, result.stderr
    _assert_one_message(result, options[0])


def test_the_supervisor_process_itself_reports_a_start_failure(tmp_path: Path) -> None:
    # Started without a heart (as the tests' harness does): the same message and status.
    agent = tmp_path / "raises.py"
    agent.write_text("from project_o import Agent\nagent = Agent('x')\nraise RuntimeError('no')\n")
    result = subprocess.run(
        [sys.executable, "-m", "project_o.supervisor", "--vault", str(tmp_path / "v"),
         "--agent", str(agent), "--port", "0"],
        env={**os.environ, "PROJECT_O_TOKEN": TOKEN}, capture_output=True, text=True,
        timeout=GUARD_S, check=False,
    )
    assert result.returncode == EXIT_AGENT_BROKEN, result.stderr
    _assert_one_message(result, "RuntimeError: no")
    assert "raise RuntimeError('no')" in result.stderr
