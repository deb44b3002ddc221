"""The zygote: startup, import failures, forks, exit reports, shutdown, its wire contract."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest

from project_o.errors import AgentLoadError, InvalidArgument, ZygoteError
from project_o.runtime.confine.pids import inner_pid
from project_o.runtime.instance import EXIT_PROTOCOL
from project_o.runtime.sandbox import scrubbed_env
from project_o.runtime.zygote_client import ZygoteHandle
from project_o.wire import Message, encode_frame, read_message, write_message
from tests.processes import assert_gone
from tests.runtime.harness import CHAOS_AGENT, run, spawn, zygote

BROKEN_AGENT = """
from project_o import Agent

agent = Agent("broken")


def helper():
    raise RuntimeError("the agent's import blew up")


helper()
"""


def test_hello_names_the_agent_and_version() -> None:
    async def scenario() -> None:
        async with zygote(version="v7") as z:
            assert z.agent_name == "chaos"
            assert z.version == "v7"
            assert z.alive

    run(scenario())


def test_agent_import_failure_is_a_clear_error_with_the_traceback(tmp_path: Path) -> None:
    broken = tmp_path / "broken_agent.py"
    broken.write_text(BROKEN_AGENT)

    async def scenario() -> None:
        with pytest.raises(AgentLoadError) as caught:
            await ZygoteHandle.start(broken, "v1", env=scrubbed_env())
        error = caught.value
        assert "RuntimeError" in str(error) and "blew up" in str(error)
        assert error.traceback is not None
        assert "broken_agent.py" in error.traceback and "helper()" in error.traceback

    run(scenario())


def test_module_without_an_agent_is_refused_at_start(tmp_path: Path) -> None:
    empty = tmp_path / "empty_agent.py"
    empty.write_text("VALUE = 1\n")

    async def scenario() -> None:
        with pytest.raises(AgentLoadError, match="defines no Agent"):
            await ZygoteHandle.start(empty, "v1", env=scrubbed_env())

    run(scenario())


def test_bad_fork_arguments_are_refused_and_the_zygote_keeps_working() -> None:
    async def scenario() -> None:
        async with zygote() as z:
            with pytest.raises(InvalidArgument, match="unknown limits"):
                await z.fork("main", "m1", {"ram": 1})
            with pytest.raises(InvalidArgument, match="heartbeat_interval"):
                await z.fork("main", "m1", None, {"heartbeat_interval": 0})
            with pytest.raises(ZygoteError, match="instance_id"):
                await z.fork("main", "")  # checked by the zygote itself
            peer = await spawn(z)
            assert (await peer.call({"do": "echo", "input": 1})).data["output"] == 1

    run(scenario())


def test_exits_are_reported_to_the_callback_and_the_instance() -> None:
    reports: list[dict[str, Any]] = []

    async def scenario() -> None:
        z = await ZygoteHandle.start(CHAOS_AGENT, "v1", env=scrubbed_env(), on_exit=reports.append)
        try:
            peer = await spawn(z)
            await peer.send("request", id="x", input={"do": "exit"})
            status = await peer.exited()
            assert (status.exit_code, status.signal) == (3, None)
            assert status.description == "exit code 3"
            assert reports[-1]["pid"] == peer.pid and reports[-1]["exit_code"] == 3

            survivor = await spawn(z)
        finally:
            await z.close()
        # shutdown: the zygote SIGKILLs what is left and reports it before exiting
        status = await survivor.exited()
        assert status.signal == signal.SIGKILL
        assert z.returncode == 0

    run(scenario())


def test_fork_after_the_zygote_died_raises() -> None:
    async def scenario() -> None:
        async with zygote() as z:
            os.kill(z.pid, signal.SIGKILL)
            for _ in range(500):
                if not z.alive:
                    break
                await asyncio.sleep(0.01)
            with pytest.raises(ZygoteError, match="gone"):
                await z.fork("main", "late")

    run(scenario())


SUPERVISOR_SCRIPT = """
import asyncio, sys
from project_o.runtime.sandbox import scrubbed_env
from project_o.runtime.zygote_client import ZygoteHandle

async def main():
    handle = await ZygoteHandle.start(sys.argv[1], "v1", env=scrubbed_env())
    print(handle.pid, flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"""


def test_zygote_dies_with_its_supervisor() -> None:
    supervisor = subprocess.Popen(
        [sys.executable, "-c", SUPERVISOR_SCRIPT, str(CHAOS_AGENT)], stdout=subprocess.PIPE
    )
    try:
        assert supervisor.stdout is not None
        zygote_pid = int(supervisor.stdout.readline())
        assert psutil.Process(zygote_pid).ppid() == supervisor.pid
        supervisor.kill()
        supervisor.wait()
        assert_gone(zygote_pid, "a zygote whose supervisor died")
    finally:
        supervisor.kill()
        supervisor.wait()


def test_wire_contract_with_a_blocking_supervisor() -> None:
    """The command line and frames of docs/design.md ("Wire protocol"), without the asyncio client."""
    ours, theirs = socket.socketpair()
    env = scrubbed_env()
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(__file__).resolve().parents[2] / "src"), env.get("PYTHONPATH", "")]
    )
    zygote_process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "project_o.runtime.zygote",
            "--agent",
            str(CHAOS_AGENT),
            "--version",
            "raw",
            "--control-fd",
            str(theirs.fileno()),
        ],
        pass_fds=(theirs.fileno(),),
        env=env,
    )
    theirs.close()
    try:
        ours.settimeout(30)
        hello = read_message(ours)
        assert (hello.type, hello.data["pid"], hello.data["agent"]) == (
            "hello",
            zygote_process.pid,
            "chaos",
        )

        sup_end, inst_end = socket.socketpair()
        frame = encode_frame(
            Message(
                "fork",
                {"id": 9, "role": "main", "instance_id": "raw-1", "limits": {}, "config": {}},
            )
        )
        socket.send_fds(ours, [frame], [inst_end.fileno()])
        inst_end.close()
        forked = read_message(ours)
        assert (forked.type, forked.data["id"]) == ("forked", 9)
        sup_end.settimeout(30)
        assert read_message(sup_end).data["instance_id"] == "raw-1"
        write_message(sup_end, Message("shutdown", {}))
        exited = read_message(ours)
        assert exited.type == "exited"
        assert (exited.data["pid"], exited.data["exit_code"]) == (forked.data["pid"], 0)
        sup_end.close()

        write_message(ours, Message("request", {"id": "not for a zygote"}))
        assert zygote_process.wait(timeout=30) == EXIT_PROTOCOL
    finally:
        zygote_process.kill()
        zygote_process.wait()
        ours.close()


# -- the one process core, with a program of the test's own -----------------------


def test_any_program_forks_children_through_the_one_sandbox() -> None:
    """``--program``: hello, fork (sandbox applied first), refusal, kill, exit report."""
    from project_o.runtime.child import zygote_command

    root = Path(__file__).resolve().parents[2]
    ours, theirs = socket.socketpair()
    env = scrubbed_env()
    env["PYTHONPATH"] = os.pathsep.join([str(root / "src"), str(root)])
    command = zygote_command("tests.runtime.probe_program:load", ["hello-word"],
                             theirs.fileno())
    zygote_process = subprocess.Popen(command, pass_fds=(theirs.fileno(),), env=env)
    theirs.close()
    try:
        ours.settimeout(30)
        hello = read_message(ours)
        sandbox = hello.data.pop("sandbox")
        forker = hello.data.pop("host_pid")
        assert (hello.type, hello.data) == ("hello", {"word": "hello-word",
                                                      "pid": zygote_process.pid})
        # It forks as process 1 of its PID namespace: the started process's one child.
        assert (psutil.Process(forker).ppid() == zygote_process.pid if "pid" in sandbox["active"]
                else forker == zygote_process.pid)
        assert sandbox["enabled"] is True and "seccomp" in sandbox["active"]

        refused_end, other_end = socket.socketpair()
        socket.send_fds(ours, [encode_frame(Message("fork", {"id": "no", "refuse": True}))],
                        [refused_end.fileno()])
        refused_end.close()
        other_end.close()
        refused = read_message(ours)
        assert (refused.type, refused.data["id"], refused.data["kind"]) == (
            "error", "no", "InvalidArgument")

        parent_end, child_end = socket.socketpair()
        limit = 700 << 20
        socket.send_fds(ours, [encode_frame(Message("fork", {
            "id": "a", "limits": {"memory_bytes": limit}}))], [child_end.fileno()])
        child_end.close()
        forked = read_message(ours)
        assert (forked.type, forked.data["id"]) == ("forked", "a")
        parent_end.settimeout(30)
        probe = read_message(parent_end).data
        # The sandbox ran before the program: own session, its limits, only fds 0-3;
        # the zygote reports the host's pid, the child sees its PID namespace's.
        assert probe["pid"] == inner_pid(forked.data["pid"]) == probe["sid"]
        assert probe["address_space"] == limit
        assert probe["fd"] == 3 and [fd for fd in probe["fds"] if fd > 3] in ([], [4])

        write_message(ours, Message("kill", {"id": "a"}))
        exited = read_message(ours)
        assert exited.type == "exited"
        assert (exited.data["id"], exited.data["pid"], exited.data["signal"],
                exited.data["word"]) == ("a", forked.data["pid"], signal.SIGKILL, "hello-word")
        assert exited.data["exit_code"] is None and exited.data["memory_kb"] > 0
        parent_end.close()

        write_message(ours, Message("shutdown", {}))
        assert zygote_process.wait(timeout=30) == 0
    finally:
        zygote_process.kill()
        zygote_process.wait()
        ours.close()
