"""Escalation: a version that will not load or crash-loops is given up for the last good one."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.supervisor.harness import FAST_HEARTBEAT, Stack

pytestmark = pytest.mark.slow

GOOD = '''
from project_o import Agent
agent = Agent("versioned")

@agent.handler
def handle(ctx, request):
    return {"version": "good"}
'''
BROKEN_IMPORT = "raise RuntimeError('this version does not even import')\n"
CRASH_LOOP = '''
import os
from project_o import Agent
agent = Agent("versioned")

@agent.handler
def handle(ctx, request):
    os._exit(1)
'''


def _serve_once(vault: Path, agent: Path, *extra: str) -> Stack:
    return Stack(vault, ["--agent", str(agent), *FAST_HEARTBEAT, *extra])


def _prove_good(tmp_path: Path) -> Path:
    vault, good = tmp_path / "vault", tmp_path / "good.py"
    good.write_text(GOOD)
    stack = _serve_once(vault, good)
    try:
        assert stack.ask("hi").json()["output"] == {"version": "good"}
    finally:
        stack.stop()
    return vault


def test_a_version_that_does_not_import_falls_back_to_the_last_good(tmp_path: Path) -> None:
    vault = _prove_good(tmp_path)
    broken = tmp_path / "broken.py"
    broken.write_text(BROKEN_IMPORT)
    stack = _serve_once(vault, broken)
    try:
        assert stack.ask("hi").json()["output"] == {"version": "good"}
        fallbacks = [e for e in stack.status()["events"] if e["kind"] == "fallback"]
        assert fallbacks and "does not even import" in fallbacks[0]["reason"]
    finally:
        stack.stop()


def test_a_crash_looping_version_is_given_up(tmp_path: Path) -> None:
    vault = _prove_good(tmp_path)
    looping = tmp_path / "looping.py"
    looping.write_text(CRASH_LOOP)
    stack = _serve_once(vault, looping, "--max-restarts", "2", "--restart-period", "60")
    try:
        answers = [stack.ask(f"request {n}") for n in range(6)]
        assert any(a.status_code == 200 and a.json()["output"] == {"version": "good"}
                   for a in answers), [a.text for a in answers]
        kinds = [e["kind"] for e in stack.status()["events"]]
        assert "fallback" in kinds
    finally:
        stack.stop()
