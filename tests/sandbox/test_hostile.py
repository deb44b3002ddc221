"""Agent code that tries to get out, served by a real heart + supervisor: every attempt
fails, and nothing is lost (memory intact, supervisor and heart the same processes,
the token unchanged).

The agent (``project_o/bench/agents/hostile_agent.py``) counts its attempts and
successes per probe; the tests assert zero successes and then check from outside.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil
import pytest

import project_o
from project_o.bench.agents import HOSTILE_AGENT
from project_o.bench.agents.hostile_agent import TARGETS_FILE
from tests.processes import running
from tests.supervisor.harness import FAST_HEARTBEAT, TOKEN, Stack

#: the layers these tests rely on; a machine without one skips with the reason
NEEDED = ("identity", "mount", "pid", "network", "seccomp")
MEMORY = {f"fact-{n}": n for n in range(5)}


class Sandboxed:
    """One served hostile agent, and what must survive every probe."""

    def __init__(self, stack: Stack, listener: socket.socket) -> None:
        self.stack = stack
        self.listener = listener
        status = stack.status()
        self.supervisor, self.heart = status["supervisor_pid"], status["heart_pid"]
        self.token_digest = _digest(stack.vault / "token")
        missing = {name: why for name, why in status["sandbox"]["missing"].items()
                   if name in NEEDED}
        self.skip_reason = f"sandbox layers unavailable here: {missing}" if missing else ""

    def probe(self, name: str, **args: Any) -> dict[str, Any]:
        response = self.stack.do("probe", probe=name, **args)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()["output"]
        assert result["attempts"] > 0
        return result

    def nothing_lost(self) -> None:
        """Memory intact, the same supervisor and heart, the token untouched."""
        for key, value in MEMORY.items():
            response = self.stack.do("get", key=key)
            assert response.status_code == 200, response.text
            assert response.json()["output"] == {"value": value}, key
        status = self.stack.status()
        assert (status["supervisor_pid"], status["heart_pid"]) == (self.supervisor, self.heart)
        assert running(self.supervisor) and running(self.heart)
        assert _digest(self.stack.vault / "token") == self.token_digest

    def main_descendants(self) -> list[int]:
        return [p.pid for p in psutil.Process(self.stack.main_pid()).children(recursive=True)]

    def kill_main_and_wait(self, orphans: list[int]) -> None:
        """kill -9 the main; every process it left must be gone soon after."""
        os.kill(self.stack.main_pid(), 9)
        assert self.stack.do("get", key="fact-0").status_code == 200  # served again
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(running(p) for p in orphans):
            time.sleep(0.05)
        assert not [p for p in orphans if running(p)], "they outlived their instance"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _session(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[3])


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def sandboxed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandboxed]:
    home = tmp_path_factory.mktemp("hostile")
    agent = home / "agent"
    agent.mkdir()
    shutil.copy(HOSTILE_AGENT, agent / "hostile_agent.py")
    vault, port = home / "vault", _free_port()
    (agent / TARGETS_FILE).write_text(
        f'{{"port": {port}, "read": ["{vault / "token"}", "{vault / "catalog.sqlite"}"]}}')
    vault.mkdir(mode=0o700)
    (vault / "token").write_text(TOKEN)  # a token file to steal (the client knows it too)
    (vault / "token").chmod(0o600)
    listener = socket.create_server(("127.0.0.1", 0))  # "any address" a probe may try
    stack = Stack(vault, ["--agent", str(agent / "hostile_agent.py"), *FAST_HEARTBEAT,
                          "--port", str(port)], heart=True, token_env=False)
    try:
        for key, value in MEMORY.items():
            assert stack.do("set", key=key, value=value).status_code == 200
        yield Sandboxed(stack, listener)
    finally:
        stack.stop()
        listener.close()


@pytest.fixture
def box(sandboxed: Sandboxed) -> Sandboxed:
    if sandboxed.skip_reason:
        pytest.skip(sandboxed.skip_reason)
    return sandboxed


def test_the_token_and_the_supervisor_and_hearts_proc_files_cannot_be_read(
        box: Sandboxed) -> None:
    paths = [str(box.stack.vault / "token")]
    for pid in (box.supervisor, box.heart):
        paths += [f"/proc/{pid}/environ", f"/proc/{pid}/mem"]
    result = box.probe("read", paths=paths)
    assert result["succeeded"] == 0, result["detail"]
    box.nothing_lost()


def test_the_wal_checkpoints_and_catalog_cannot_be_opened_for_writing(box: Sandboxed) -> None:
    vault = box.stack.vault
    segments = sorted(str(p) for p in (vault / "wal").glob("*.wal"))
    checkpoints = sorted(str(p) for p in (vault / "checkpoints").glob("*"))
    assert segments, "the vault has a WAL segment to attack"
    result = box.probe("open_write",
                       paths=[*segments, *checkpoints, str(vault / "catalog.sqlite")])
    assert result["succeeded"] == 0, result["detail"]
    box.nothing_lost()


def test_the_package_source_home_and_vault_cannot_be_written(box: Sandboxed) -> None:
    package = Path(project_o.__file__).resolve().parent
    dirs = [str(package), str(package / "runtime"), os.path.expanduser("~"),
            str(box.stack.vault), str(box.stack.vault / "checkpoints")]
    before = sorted(os.listdir(package))
    result = box.probe("create", dirs=dirs)
    assert result["succeeded"] == 0, result["detail"]
    assert sorted(os.listdir(package)) == before
    box.nothing_lost()


def test_no_address_can_be_reached_not_even_loopback(box: Sandboxed) -> None:
    gateway = int(box.stack.http.base_url.port) if box.stack.http else 0
    result = box.probe("connect", ports=[gateway, box.listener.getsockname()[1]])
    assert result["succeeded"] == 0, result["detail"]
    box.nothing_lost()


def test_the_supervisor_the_heart_and_the_zygote_cannot_be_signalled(box: Sandboxed) -> None:
    zygote = psutil.Process(box.stack.main_pid()).ppid()
    result = box.probe("signal", pids=[box.supervisor, box.heart])
    # Its parent (the zygote, process 1 of its namespace) drops the signal: the kill()
    # call itself may say success, so the count covers the supervisor and heart and
    # the zygote is checked by being alive.
    assert result["succeeded"] <= 1 and not any(
        d.startswith("succeeded") for d in result["detail"][:2]), result["detail"]
    assert running(zygote)
    box.nothing_lost()


def test_ptrace_process_vm_namespaces_mount_bpf_and_keyctl_are_refused(box: Sandboxed) -> None:
    result = box.probe("syscalls", pid=1)
    assert result["succeeded"] == 0, result["detail"]
    box.nothing_lost()


def test_forged_heartbeats_hide_no_hung_handler(box: Sandboxed) -> None:
    """Each hung handler forges heartbeats on the instance's socket: the deadlines
    still end the requests, and once hung ones hold all four slots the main is
    replaced."""
    main = box.stack.main_pid()
    assert box.stack.ask({"do": "hang_beating"}, deadline_ms=2000).status_code == 504
    assert box.stack.main_pid() == main and running(main)  # three slots still free
    box.nothing_lost()  # served beside the hung handler
    with ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(
            lambda _: box.stack.ask({"do": "hang_beating"}, deadline_ms=2000).status_code,
            range(3)))
    assert answers == [504] * 3
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and running(main):
        time.sleep(0.05)
    assert not running(main), "a main whose every slot is held by an expired request is killed"
    box.nothing_lost()


@pytest.mark.slow
def test_a_setsid_grandchild_dies_with_its_instance(box: Sandboxed) -> None:
    result = box.probe("setsid_grandchild")
    assert result["succeeded"] == 0
    orphans = box.main_descendants()
    assert orphans, "the grandchild runs under its instance (the instance is its reaper)"
    main_session = _session(box.stack.main_pid())
    assert any(_session(pid) != main_session for pid in orphans)  # it left the session
    box.kill_main_and_wait(orphans)
    box.nothing_lost()


@pytest.mark.slow
def test_a_500_fork_bomb_is_stopped_and_dies_with_its_instance(box: Sandboxed) -> None:
    result = box.probe("fork_bomb", count=500)
    assert result["succeeded"] == 0, result["detail"]
    made = int(result["detail"][0].split()[0])
    assert 0 < made < 500
    box.kill_main_and_wait(box.main_descendants())
    box.nothing_lost()


@pytest.mark.slow
def test_filling_tmp_fills_only_the_private_tmp(box: Sandboxed) -> None:
    before = shutil.disk_usage("/tmp").free
    result = box.probe("fill_tmp", limit_bytes=1 << 30)
    assert result["succeeded"] == 0, result["detail"]
    assert "ENOSPC" in result["detail"][0]
    assert not list(Path("/tmp").glob("hostile-fill-*"))
    # Nothing of it reached the host's /tmp (a margin for other work on the machine).
    assert shutil.disk_usage("/tmp").free > before - (256 << 20)
    box.nothing_lost()


def test_at_import_time_the_zygote_is_already_contained(box: Sandboxed) -> None:
    seen = box.stack.do("import_probes").json()["output"]
    assert seen["uid"] not in (0, os.getuid()) and seen["gid"] != 0
    assert seen["no_new_privs"] == "1" and seen["seccomp"] == "2"
    assert seen["pid"] == 1 and seen["processes"] == [1]  # its own PID namespace, alone
    assert seen["interfaces"] == ["lo"]  # no network, loopback down
    assert seen["hostname"] == "project-o-sandbox"
    failed = [k for k in ("unshare", "connect") if seen[k][0]]
    failed += [k for k in seen if k.startswith("read ") and seen[k][0]]
    assert not failed, {k: seen[k] for k in failed}
    assert any(k.startswith("read ") for k in seen)
    box.nothing_lost()


def test_status_reports_every_layer(box: Sandboxed) -> None:
    sandbox = box.stack.status()["sandbox"]
    assert sandbox["enabled"] is True
    names = {layer["name"] for layer in sandbox["layers"]}
    assert {"identity", "mount", "pid", "ipc", "uts", "network", "no_new_privs", "seccomp",
            "landlock", "limits", "cgroup"} <= names
    assert all(layer["detail"] for layer in sandbox["layers"])
