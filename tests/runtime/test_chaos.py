"""Every fault of the chaos agent ends the way the runtime promises.

One test per misbehaviour, each observed the way a supervisor observes it:
an error frame, or EOF on the instance's socket plus the zygote's
``exited`` report (exit code or signal), or heartbeats that stop.
"""

from __future__ import annotations

import signal
import time

import psutil
import pytest

from project_o.errors import ConnectionClosed, FrameDecodeError, FrameTooLarge
from project_o.runtime.instance import EXIT_CHANNEL_LOST
from project_o.runtime.zygote_client import ExitStatus
from tests.fixtures import chaos_agent
from tests.processes import running
from tests.runtime.harness import FAST_BEATS, Peer, run, spawn, zygote


async def _dies(peer: Peer, request: dict[str, object]) -> tuple[ConnectionClosed, ExitStatus]:
    await peer.send("request", id="fatal", input=request)
    closed = await peer.closed()
    assert isinstance(closed, ConnectionClosed), closed
    return closed, await peer.exited()


@pytest.mark.parametrize(
    ("do", "exit_code", "signum"),
    [
        ("exit", chaos_agent.EXIT_CODE, None),
        ("sys_exit", chaos_agent.SYS_EXIT_CODE, None),
        ("segv", None, signal.SIGSEGV),
        ("close_socket", EXIT_CHANNEL_LOST, None),
    ],
)
def test_crash_ends_in_eof_and_the_expected_exit(
    do: str, exit_code: int | None, signum: int | None
) -> None:
    async def scenario() -> None:
        async with zygote() as z:
            peer = await spawn(z)
            _, status = await _dies(peer, {"do": do})
            assert (status.exit_code, status.signal) == (exit_code, signum)
            # The zygote is unharmed: the next instance serves.
            fresh = await spawn(z)
            assert (await fresh.call({"do": "echo", "input": do})).data["output"] == do

    run(scenario())


@pytest.mark.slow
def test_c_stack_overflow_is_a_segfault_not_a_hang() -> None:
    async def scenario() -> None:
        async with zygote() as z:
            peer = await spawn(z)
            _, status = await _dies(peer, {"do": "recurse"})
            assert status.signal == signal.SIGSEGV

    run(scenario())


def test_poison_only_kills_on_the_poisoned_input() -> None:
    async def scenario() -> None:
        async with zygote() as z:
            peer = await spawn(z)
            fine = await peer.call({"do": "poison", "input": "harmless"})
            assert fine.data["output"] == "harmless"
            _, status = await _dies(peer, {"do": "poison", "input": "poison"})
            assert status.exit_code == chaos_agent.POISON_EXIT_CODE

    run(scenario())


@pytest.mark.parametrize("do", ["loop", "deadlock"])
def test_hang_stops_the_heartbeats(do: str) -> None:
    async def scenario() -> None:
        async with zygote() as z:
            peer = await spawn(z, config=FAST_BEATS)
            before = [m for m in await peer.silence(0.3) if m.type == "heartbeat"]
            assert len(before) >= 2  # beating while idle
            await peer.send("request", id="hang", input={"do": do})
            during = [m for m in await peer.silence(1.0) if m.type == "heartbeat"]
            # 20 intervals of silence; one beat may have been in flight already.
            assert len(during) <= 1
            peer.kill()  # what the supervisor does after missed heartbeats
            assert (await peer.exited()).signal == signal.SIGKILL

    run(scenario())


@pytest.mark.slow
def test_memory_bomb_is_stopped_by_the_quota_and_the_instance_survives() -> None:
    async def scenario() -> None:
        async with zygote() as z:
            peer = await spawn(z, limits={"memory_bytes": 256 << 20})
            await peer.send("request", id="bomb", input={"do": "membomb"})
            try:
                answer = await peer.expect("error")
            except ConnectionClosed:  # a cgroup OOM kill instead of a refused allocation
                assert (await peer.exited()).signal == signal.SIGKILL
                return
            assert answer.data["kind"] == "MemoryError"
            after = await peer.call({"do": "echo", "input": "alive"})
            assert after.data["output"] == "alive"

    run(scenario())


@pytest.mark.slow
def test_fork_bomb_children_die_with_the_instance() -> None:
    async def scenario() -> None:
        async with zygote() as z:
            peer = await spawn(z)
            answer = await peer.call({"do": "forkbomb"})
            if answer.type == "error":  # pids.max stopped it: also a pass
                assert answer.data["kind"] in ("BlockingIOError", "OSError")
                return
            # The pids the agent saw are its PID namespace's: ask the host for them.
            assert len(answer.data["output"]["children"]) == chaos_agent.FORKBOMB_CHILDREN
            children = [c.pid for c in psutil.Process(peer.pid).children()]
            assert len(children) == chaos_agent.FORKBOMB_CHILDREN
            await peer.send("shutdown")
            assert (await peer.exited()).exit_code == 0
            _wait_all_gone(children)

    run(scenario())


def _wait_all_gone(pids: list[int], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = [p for p in pids if running(p)]
        if not alive:
            return
        time.sleep(0.02)
    raise AssertionError(f"fork-bomb children outlived their instance: {alive}")


@pytest.mark.parametrize(
    ("do", "error"), [("garbage", FrameDecodeError), ("oversized", FrameTooLarge)]
)
def test_corrupt_frames_are_a_protocol_violation_at_the_supervisor(do: str, error: type) -> None:
    async def scenario() -> None:
        async with zygote() as z:
            peer = await spawn(z)
            await peer.send("request", id="bad", input={"do": do})
            assert isinstance(await peer.closed(), error)
            peer.kill()  # the supervisor's answer to a violation
            assert (await peer.exited()).signal == signal.SIGKILL

    run(scenario())
