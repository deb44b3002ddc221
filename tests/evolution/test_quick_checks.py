"""Quick checks run in a sandboxed child of a zygote that imported the candidate.

Real zygotes, real forks: a passing agent, a failing check (its traceback
is the reason), a check that kills its own process, a check that hangs
past the timeout, and a check that looks for the supervisor's secrets.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import psutil
import pytest

from project_o.evolution.quick_checks import run_quick_checks
from tests.processes import running

AGENT = '''import os, signal, time
from project_o import Agent

agent = Agent("checked")


@agent.handler
def handle(ctx, request):
    return {"n": request["n"]}


@agent.check
def echoes(client):
    assert client.call({"n": 7}) == {"n": 7}
'''

#: seconds a test lets its checks run; the hanging one must be stopped well before it
PATIENCE_S = 60.0


def checks(tmp_path: Path, extra: str = "", timeout: float = PATIENCE_S) -> str | None:
    agent = tmp_path / "checked_agent.py"
    agent.write_text(AGENT + extra)
    return asyncio.run(run_quick_checks(agent, timeout=timeout))


def test_an_agent_whose_checks_pass_is_accepted(tmp_path: Path) -> None:
    assert checks(tmp_path) is None


def test_a_failing_check_is_named_with_its_traceback(tmp_path: Path) -> None:
    reason = checks(tmp_path, '''

@agent.check
def doubles(client):
    print("about to check doubling")
    assert client.call({"n": 2}) == {"n": 4}, "no doubling"
''')
    assert reason is not None and reason.startswith("failed its quick checks (exit 1)")
    assert "check doubles failed" in reason and "AssertionError: no doubling" in reason
    assert "about to check doubling" in reason  # what the check printed comes back too


def test_a_check_that_kills_its_process_fails_the_candidate(tmp_path: Path) -> None:
    reason = checks(tmp_path, '''

@agent.check
def dies(client):
    os.kill(os.getpid(), signal.SIGKILL)
''')
    assert reason is not None and reason.startswith("failed its quick checks (exit -9)")


def test_a_hanging_check_is_stopped_at_the_timeout(tmp_path: Path) -> None:
    reason = checks(tmp_path, '''

@agent.check
def hangs(client):
    time.sleep(600)
''', timeout=20.0)
    assert reason == "its quick checks did not finish within 20 s"
    # Killed with its zygote, and reaped: nothing of the checks' processes is left.
    left = [p.pid for p in psutil.process_iter(["cmdline"])
            if str(tmp_path) in " ".join(p.info["cmdline"] or ())]
    assert not [pid for pid in left if running(pid)]


def test_checks_never_see_the_supervisors_secrets(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROJECT_O_TOKEN", "hunter2")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    reason = checks(tmp_path, '''

@agent.check
def no_secrets(client):
    leaked = {k for k in ("PROJECT_O_TOKEN", "OPENAI_API_KEY") if k in os.environ}
    assert not leaked, leaked
''')
    assert reason is None
