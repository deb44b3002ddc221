"""A zygote names the process that forks in its hello; every ``forked`` pid must be that
process's own child. A sandboxed zygote forks as process 1 of its PID namespace, the
started process's one child; an unsandboxed one forks as the started process itself.

The zygotes here are forgers (what agent code that took over a zygote could send); the
real sandboxed zygote's forks are covered by every served test.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from project_o.errors import ZygoteError
from project_o.runtime.zygote_client import ZygoteHandle

ROOT = Path(__file__).resolve().parents[2]

#: argv: control fd, the forker the hello names, the pid the ``forked`` reply claims.
#: The forger starts A, and A starts B (both wait). forker "self": the started process
#: (no ``host_pid``); "child": A (the sandbox's shape); "parent": our parent (the
#: supervisor). claim "a" or "b". Prints A, B and the claimed pid.
FORGER = """
import os, signal, socket, sys
from project_o.wire import Message, encode_frame, read_message

r, w = os.pipe()
if os.fork() == 0:
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # our stdout is the test's pipe
    if os.fork() == 0:
        os.write(w, f"{os.getppid()} {os.getpid()}\\n".encode())
    signal.pause()
    os._exit(0)
a, b = map(int, os.fdopen(r).readline().split())
forker, claim = sys.argv[2], sys.argv[3]
hello = {"pid": os.getpid()}
if forker == "child":
    hello["host_pid"] = a
elif forker == "parent":
    hello["host_pid"] = os.getppid()
claimed = a if claim == "a" else b
print(a, b, claimed, flush=True)
sock = socket.socket(fileno=int(sys.argv[1]))
sock.sendall(encode_frame(Message("hello", hello)))
fork = read_message(sock)
sock.sendall(encode_frame(Message("forked", {"id": fork.data["id"], "pid": claimed})))
sock.recv(1)
"""


async def _forger(forker: str, claim: str, spawned: list[int]) -> tuple[
        ZygoteHandle, asyncio.subprocess.Process, int]:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with theirs:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", FORGER, str(theirs.fileno()), forker, claim,
            pass_fds=(theirs.fileno(),), cwd=ROOT, stdout=subprocess.PIPE)
    ours.setblocking(False)
    assert process.stdout is not None
    a, b, claimed = map(int, (await process.stdout.readline()).split())
    spawned += [a, b]
    return ZygoteHandle(process, ours, "v1", None), process, claimed


@pytest.fixture
def spawned() -> Iterator[list[int]]:
    """The forger's A and B, killed after the test (they outlive the killed forger)."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            psutil.Process(pid).kill()


def _refused(forker: str, claim: str, spawned: list[int]) -> None:
    """A forger whose fork must be refused: it is killed, the process it named is not."""
    async def scenario() -> int | None:
        handle, process, _ = await _forger(forker, claim, spawned)
        try:
            with pytest.raises(ZygoteError, match="claims pid"):
                await handle.fork("main", "main-1")
            return await asyncio.wait_for(process.wait(), 30)
        finally:
            await handle.close()

    assert asyncio.run(scenario()) == -9
    assert all(psutil.pid_exists(pid) for pid in spawned)


def test_an_unsandboxed_zygote_may_not_claim_a_grandchild(spawned: list[int]) -> None:
    _refused("self", "b", spawned)


def test_the_forker_may_not_claim_itself(spawned: list[int]) -> None:
    _refused("child", "a", spawned)


def test_a_hello_naming_a_forker_outside_the_started_process_ends_the_zygote(
        spawned: list[int]) -> None:
    async def scenario() -> tuple[str, int | None]:
        handle, process, _ = await _forger("parent", "a", spawned)
        try:
            reason = await asyncio.wait_for(handle.lost(), 30)
            return reason, await asyncio.wait_for(process.wait(), 30)
        finally:
            await handle.close()

    reason, code = asyncio.run(scenario())
    assert "forks as pid" in reason and code == -9


@pytest.mark.parametrize(("forker", "claim"), [("self", "a"), ("child", "b")])
def test_a_child_of_the_forker_is_accepted(forker: str, claim: str,
                                           spawned: list[int]) -> None:
    async def scenario() -> tuple[int, int]:
        handle, _, claimed = await _forger(forker, claim, spawned)
        try:
            forked = await handle.fork("main", "main-1")
            forked.writer.close()
            return forked.pid, claimed
        finally:
            await handle.close()

    pid, claimed = asyncio.run(scenario())
    assert pid == claimed
