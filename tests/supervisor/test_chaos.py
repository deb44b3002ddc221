"""Fault injectors against a real supervisor: it survives, replaces, remembers.

Each case: write memory through the agent, make the main instance die (or
hang, or lie on its socket) in one particular way, then check that the
supervisor is still the same process, a new main answers, every
acknowledged write is intact and the event was recorded with a reason.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.processes import running
from tests.supervisor.harness import CHAOS_AGENT, FAST_HEARTBEAT, Stack

pytestmark = pytest.mark.slow

#: (chaos action, event kind we expect to see recorded)
FAULTS = [
    ("exit", "crash"),
    ("sys_exit", "crash"),
    ("segv", "crash"),
    ("recurse", "crash"),
    ("loop", "hang"),
    ("deadlock", "hang"),
    ("garbage", "crash"),
    ("oversized", "crash"),
    ("close_socket", "crash"),
]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    vault = tmp_path_factory.mktemp("chaos") / "vault"
    running = Stack(
        vault, ["--agent", str(CHAOS_AGENT), "--memory-limit-mb", "2048", *FAST_HEARTBEAT]
    )
    yield running
    running.stop()


def _write_and_check(stack: Stack, prefix: str, count: int = 5) -> dict[str, int]:
    written = {}
    for n in range(count):
        response = stack.do("set", key=f"{prefix}-{n}", value=n)
        assert response.status_code == 200, response.text
        written[f"{prefix}-{n}"] = n
    return written


def _assert_memory(stack: Stack, expected: dict[str, int]) -> None:
    for key, value in expected.items():
        response = stack.do("get", key=key)
        assert response.status_code == 200, response.text
        assert response.json()["output"] == {"value": value}, key


@pytest.mark.parametrize(("action", "kind"), FAULTS)
def test_main_dies_and_is_replaced_with_memory_intact(stack: Stack, action: str, kind: str) -> None:
    supervisor = stack.supervisor_pid()
    written = _write_and_check(stack, action)
    victim = stack.main_pid()

    response = stack.do(action)

    assert response.status_code == 502, response.text
    assert "quarantined" in response.json()["error"]["message"]
    assert stack.supervisor_pid() == supervisor
    assert stack.do("echo", input="alive").json()["output"] == "alive"
    assert stack.main_pid() != victim
    _assert_memory(stack, written)
    events = stack.status()["events"]
    assert any(e["kind"] == kind and e["reason"] for e in events), events
    assert any(e["kind"] == "quarantine" for e in events)


@pytest.mark.parametrize(("action", "reason"), [
    ("forge_type", "'restore' may not be sent here"),
    ("big_heartbeat", "heartbeat frame of 1048"),
])
def test_a_forged_frame_is_a_crash_with_its_reason_counted_as_a_restart(
        stack: Stack, action: str, reason: str) -> None:
    supervisor = stack.supervisor_pid()
    written = _write_and_check(stack, action)
    restarts = stack.status()["restarts"]
    assert stack.do(action).status_code == 502  # it killed two mains: quarantined
    assert stack.supervisor_pid() == supervisor
    _assert_memory(stack, written)
    # The replacements and their events are recorded by the host's own tasks, a moment
    # after the answer: wait for them (a deadline for a stuck run, not a timing check).
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = stack.status()
        crashes = [e for e in status["events"] if e["kind"] == "crash"]
        if status["restarts"] >= restarts + 2 and any(reason in e["reason"] for e in crashes):
            break
        time.sleep(0.1)
    assert status["restarts"] >= restarts + 2, status["restarts"]  # counted as restarts
    assert any(reason in e["reason"] for e in crashes), crashes


def test_kill_9_of_the_main_loses_nothing(stack: Stack) -> None:
    written = _write_and_check(stack, "kill9")
    victim = stack.main_pid()
    os.kill(victim, signal.SIGKILL)
    assert stack.do("echo").status_code == 200
    assert stack.main_pid() != victim
    _assert_memory(stack, written)


def test_membomb_is_stopped_by_the_quota(stack: Stack) -> None:
    supervisor = stack.supervisor_pid()
    written = _write_and_check(stack, "membomb")
    response = stack.do("membomb")
    # The quota either makes the allocation fail (a handler error) or kills the
    # instance twice (quarantine); both answer 502 and the agent keeps serving.
    assert response.status_code == 502, response.text
    assert stack.supervisor_pid() == supervisor
    _assert_memory(stack, written)


def test_fork_bomb_children_die_with_their_instance(stack: Stack) -> None:
    response = stack.do("forkbomb")
    assert response.status_code == 200, response.text
    seen = response.json()["output"]["children"]  # pids in the sandbox's PID namespace
    children = [child.pid for child in psutil.Process(stack.main_pid()).children()]
    assert seen and len(children) == len(seen)
    os.kill(stack.main_pid(), signal.SIGKILL)
    assert stack.do("echo").status_code == 200
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(running(pid) for pid in children):
        time.sleep(0.05)
    assert not any(running(pid) for pid in children)


def test_poison_request_does_not_block_others(stack: Stack) -> None:
    assert stack.do("poison", input="poison").status_code == 502
    assert stack.do("echo", input=1).status_code == 200


def test_standby_takes_over(stack: Stack) -> None:
    before = {i["role"]: i["pid"] for i in _wait_for_standby(stack)}
    os.kill(before["main"], signal.SIGKILL)
    assert stack.do("echo").status_code == 200
    after = {i["role"]: i["pid"] for i in _wait_for_standby(stack)}
    assert after["main"] == before["standby"]
    assert after["standby"] not in (before["main"], before["standby"])


def _wait_for_standby(stack: Stack, timeout: float = 10.0) -> list[dict[str, int]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        instances = stack.status()["instances"]
        if {i["role"] for i in instances} == {"main", "standby"}:
            return instances
        time.sleep(0.05)
    raise AssertionError("no new standby was forked")


def test_supervisor_kill_9_is_survived_by_the_heart(tmp_path: Path) -> None:
    stack = Stack(tmp_path / "vault", ["--agent", str(CHAOS_AGENT), *FAST_HEARTBEAT], heart=True)
    try:
        written = _write_and_check(stack, "heart", count=10)
        old = stack.supervisor_pid()
        os.kill(old, signal.SIGKILL)
        stack.wait_ready(not_pid=old)
        assert stack.supervisor_pid() != old
        _assert_memory(stack, written)
    finally:
        stack.stop()


def test_zygote_death_is_survived(stack: Stack) -> None:
    written = _write_and_check(stack, "zygote")
    zygote = psutil.Process(stack.main_pid()).ppid()
    os.kill(zygote, signal.SIGKILL)  # its instances die with it (PR_SET_PDEATHSIG)
    response = stack.do("echo", input="after")
    assert response.status_code == 200, response.text
    _assert_memory(stack, written)
    assert psutil.Process(stack.main_pid()).ppid() != zygote
