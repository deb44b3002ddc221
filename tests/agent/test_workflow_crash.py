"""A workflow whose process dies mid-step resumes there, under a real supervisor.

The agent (``workflow_crash_agent.py``) logs every step it runs to files
under a temporary folder, so the counts below are what really ran, in any
process. Its second step kills its own process on the first attempt ever;
the supervisor re-dispatches the request (same request id, so the same
derived run id) to the next instance, which must find ``fetch`` done in the
WAL and start at ``crunch``.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from project_o.runtime.confine.pids import inner_pid
from tests.supervisor.harness import FAST_HEARTBEAT, Stack

pytestmark = pytest.mark.slow

AGENT = Path(__file__).with_name("workflow_crash_agent.py")
#: the agent's deliberate crash code (workflow_crash_agent.CRASH_EXIT_CODE)
CRASH_EXIT_CODE = 13


@pytest.fixture(params=["standby", "no-standby"])
def stack(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stack]:
    # With a standby the request resumes on an instance that tailed the WAL;
    # without one, on a fresh instance that replayed it at restore.
    extra = ["--no-standby"] if request.param == "no-standby" else []
    (tmp_path / "work").mkdir()  # where the agent logs its steps: writable in its sandbox
    running = Stack(tmp_path / "vault", ["--agent", str(AGENT), *FAST_HEARTBEAT, *extra,
                                         "--writable", str(tmp_path / "work")])
    yield running
    running.stop()


def _lines(folder: Path, name: str) -> list[str]:
    path = folder / name
    return path.read_text().splitlines() if path.exists() else []


def _assert_resumed(stack: Stack, folder: Path, response: httpx.Response) -> None:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()["output"]
    assert body["output"]["total"] == 6
    crashed_pid = int(_lines(folder, "crashed")[0])
    assert body["output"]["pid"] != crashed_pid  # finished by another process
    assert len(_lines(folder, "fetch.log")) == 1  # the completed step was not re-run
    crunches = _lines(folder, "crunch.log")
    assert int(crunches[0].split()[1]) == crashed_pid
    assert len(crunches) == 2  # the interrupted step ran again, once
    assert len(_lines(folder, "report.log")) == 1
    (run_id,) = body["runs"]
    status = stack.ask({"do": "status", "run_id": run_id}).json()["output"]
    assert status["status"] == "succeeded"
    assert status["attempts"] == {"fetch": 1, "crunch": 1, "report": 1}


def _death_event(stack: Stack, pid: int) -> dict[str, Any]:
    """The supervisor's record of ``pid``'s death (written a moment after the takeover)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for event in stack.status()["events"]:
            if event.get("pid") == pid and event["kind"] in ("crash", "hang"):
                return dict(event)
        time.sleep(0.05)
    raise AssertionError(f"no death of {pid} recorded: {stack.status()['events']}")


def test_step_that_exits_its_process_resumes_without_rerunning_done_steps(
    stack: Stack, tmp_path: Path
) -> None:
    folder = tmp_path / "work"
    supervisor = stack.supervisor_pid()
    victim = stack.main_pid()
    victim_seen = inner_pid(victim)  # the agent logs its pid as its PID namespace has it

    response = stack.ask({"dir": str(folder), "mode": "exit"})

    _assert_resumed(stack, folder, response)
    assert stack.supervisor_pid() == supervisor
    assert int(_lines(folder, "crashed")[0]) == victim_seen
    event = _death_event(stack, victim)
    assert event["kind"] == "crash" and f"exit code {CRASH_EXIT_CODE}" in event["reason"]


def test_kill_9_mid_step_resumes_without_rerunning_done_steps(
    stack: Stack, tmp_path: Path
) -> None:
    folder = tmp_path / "work"
    victim = stack.main_pid()
    answer: dict[str, httpx.Response] = {}
    sender = threading.Thread(
        target=lambda: answer.setdefault("r", stack.ask({"dir": str(folder), "mode": "hang"}))
    )
    sender.start()
    deadline = time.monotonic() + 30
    while not _lines(folder, "crashed") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _lines(folder, "crashed") == [str(inner_pid(victim))]  # it is inside crunch now
    os.kill(victim, signal.SIGKILL)
    sender.join(60)
    assert not sender.is_alive()
    _assert_resumed(stack, folder, answer["r"])
    assert "signal" in _death_event(stack, victim)["reason"]
