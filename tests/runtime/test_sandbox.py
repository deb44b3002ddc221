"""The sandbox: environment scrubbing and limits as values, then inside a live instance."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import psutil
import pytest

from project_o.errors import InvalidArgument
from project_o.runtime.confine.pids import inner_pid
from project_o.runtime.sandbox import (
    CPU_KILL_GRACE_SECONDS,
    DEFAULT_MEMORY_BYTES,
    INSTANCE_FD,
    Limits,
    scrubbed_env,
)
from tests.processes import assert_gone
from tests.runtime.harness import forking_zygote, run, spawn, zygote

SOURCE_ENV = {
    "PATH": "/usr/bin",
    "HOME": "/home/agent",
    "LANG": "C.UTF-8",
    "LC_ALL": "C.UTF-8",
    "PYTHONPATH": "/src",
    "PROJECT_O_TOKEN": "supervisor-secret",
    "PROJECT_O_VAULT": "/var/vault",
    "AWS_SECRET_ACCESS_KEY": "aws-secret",
    "GITHUB_TOKEN": "gh-secret",
    "OPENAI_API_KEY": "sk-secret",
    "RANDOM_APP_SETTING": "unlisted",
}


def test_scrubbed_env_keeps_the_allowlist_and_drops_secrets() -> None:
    env = scrubbed_env(source=SOURCE_ENV)
    assert env == {k: SOURCE_ENV[k] for k in ("PATH", "HOME", "LANG", "LC_ALL", "PYTHONPATH")}


def test_scrubbed_env_patterns_never_let_secrets_through() -> None:
    env = scrubbed_env(allow=("*",), source=SOURCE_ENV)
    assert "RANDOM_APP_SETTING" in env
    for secret in (
        "PROJECT_O_TOKEN",
        "PROJECT_O_VAULT",
        "AWS_SECRET_ACCESS_KEY",
        "GITHUB_TOKEN",
        "OPENAI_API_KEY",
    ):
        assert secret not in env


def test_scrubbed_env_extra_is_explicit_but_never_the_supervisor_token() -> None:
    env = scrubbed_env(extra={"OPENAI_API_KEY": "given on purpose"}, source=SOURCE_ENV)
    assert env["OPENAI_API_KEY"] == "given on purpose"
    with pytest.raises(InvalidArgument, match="PROJECT_O_TOKEN"):
        scrubbed_env(extra={"PROJECT_O_TOKEN": "x"}, source=SOURCE_ENV)


def test_limits_from_dict_fills_defaults_and_refuses_nonsense() -> None:
    limits = Limits.from_dict({"cpu_seconds": 10, "open_files": None})
    assert limits.memory_bytes == DEFAULT_MEMORY_BYTES
    assert (limits.cpu_seconds, limits.open_files) == (10, None)
    assert Limits.from_dict(limits.to_dict()) == limits
    with pytest.raises(InvalidArgument, match="unknown limits"):
        Limits.from_dict({"memory": 1})
    for bad in (0, -5, 1.5, True, "10"):
        with pytest.raises(InvalidArgument):
            Limits.from_dict({"cpu_seconds": bad})


def _proc_limits(pid: int) -> dict[str, tuple[str, str]]:
    rows = {}
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines()[1:]:
        name, soft, hard = line[:26].strip(), *line[26:].split()[:2]
        rows[name] = (soft, hard)
    return rows


def test_instance_runs_with_scrubbed_env_isolated_fds_own_group_and_limits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PROJECT_O_TOKEN", "must-not-leak")
    monkeypatch.setenv("MY_SERVICE_PASSWORD", "must-not-leak-either")
    limits = {"memory_bytes": 512 << 20, "cpu_seconds": 100, "open_files": 64, "file_size": 1 << 20}
    leaked_r, leaked_w = os.pipe()  # inheritable in the supervisor: must not reach agents
    os.set_inheritable(leaked_w, True)

    async def scenario() -> None:
        env = scrubbed_env(extra={"AGENT_SETTING": "visible"})
        async with zygote(env=env) as z:
            peer = await spawn(z, limits=limits)
            seen = (await peer.call({"do": "environ"})).data["output"]["env"]
            assert "PROJECT_O_TOKEN" not in seen
            assert "MY_SERVICE_PASSWORD" not in seen
            assert seen["AGENT_SETTING"] == "visible"
            assert "PATH" in seen

            fds = (await peer.call({"do": "fds"})).data["output"]
            # stdio, the socket, and the runtime's own event loop wakeup pair (two
            # sockets it makes after the sandbox closed every inherited descriptor).
            assert fds["fds"][:4] == [0, 1, 2, INSTANCE_FD]
            extra = [fds["targets"][str(fd)] for fd in fds["fds"][4:]]
            assert len(extra) == 2 and all(t.startswith("socket:") for t in extra), extra
            assert fds["stdin"] == os.devnull

            me = (await peer.call({"do": "whoami"})).data["output"]
            # Seen from inside (its PID namespace) and from the host:
            assert me["pgid"] == me["sid"] == me["pid"] == inner_pid(peer.pid)
            assert psutil.Process(peer.pid).ppid() == forking_zygote(z) == z.hello["host_pid"]
            assert me["ppid"] == inner_pid(forking_zygote(z))
            assert me["pdeathsig"] == signal.SIGKILL
            assert me["core"] == [0, 0]

            rows = _proc_limits(peer.pid)  # read from outside, as an operator would
            assert rows["Max address space"] == (str(512 << 20),) * 2
            assert rows["Max cpu time"] == ("100", str(100 + CPU_KILL_GRACE_SECONDS))
            assert rows["Max open files"] == ("64", "64")
            assert rows["Max file size"] == (str(1 << 20),) * 2

    try:
        run(scenario())
    finally:
        os.close(leaked_r)
        os.close(leaked_w)


def test_instance_dies_with_its_zygote() -> None:
    async def scenario() -> None:
        async with zygote() as z:
            peer = await spawn(z)
            os.kill(z.pid, signal.SIGKILL)
            assert await peer.closed() is not None  # EOF: the instance's end closed
            status = await peer.exited()
            assert (status.exit_code, status.signal) == (None, None)  # nobody left to tell
            assert_gone(peer.pid, "an instance whose zygote died")

    run(scenario())
