"""The cgroups the parent makes for each zygote and child: real processes, real cgroup files.

Where no cgroup hierarchy is writable here, the tests that need one skip with the reason
the status report gives; what the report says is then tested instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from project_o.runtime.confine import SandboxPolicy, cgroups
from project_o.runtime.sandbox import scrubbed_env
from project_o.runtime.zygote_client import ForkedChild, ZygoteHandle, _with_layer
from project_o.wire import read_message_async

ROOT = Path(__file__).resolve().parents[2]
PROGRAM = "tests.sandbox.cgroup_program:load"
PIDS = 16
MEMORY = 256 << 20  # a multiple of the page size: v1 reports it as written
HOST = cgroups.host()
needs_cgroups = pytest.mark.skipif(not HOST.available,
                                   reason=f"no cgroup of our own here: {HOST.describe()}")


def run(coro: Any, timeout: float = 120.0) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


@contextlib.asynccontextmanager
async def probes(policy: SandboxPolicy | None = None) -> AsyncIterator[ZygoteHandle]:
    env = scrubbed_env()
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT)])
    handle = await ZygoteHandle.start_program(PROGRAM, [], env=env,
                                              sandbox=policy or SandboxPolicy())
    try:
        yield handle
    finally:
        await handle.close()


async def act(handle: ZygoteHandle, what: str) -> tuple[ForkedChild, dict[str, Any]]:
    child = await handle.fork_child({"act": what,
                                     "limits": {"pids": PIDS, "memory_bytes": MEMORY}})
    reply = await read_message_async(child.reader)
    assert reply.type == "response", reply
    return child, reply.data


def group_dirs(handle: ZygoteHandle) -> list[Path]:
    """The zygote's cgroup, one directory per hierarchy: its children live there too."""
    group = handle.cgroups.group
    assert group is not None
    return [directory for _, directory in group.dirs]


def hierarchy_dir(dirs: list[Path], controller: str) -> Path | None:
    return next((d for d in dirs if (d / f"{controller}.max").exists()
                 or (d / f"{controller}.limit_in_bytes").exists()), None)


@pytest.fixture
def strays() -> Iterator[list[int]]:
    """Processes a test found outliving what should have taken them: killed afterwards."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            psutil.Process(pid).kill()


# -- what the machine has ---------------------------------------------------

HYBRID = """\
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
HYBRID_OWN = "8:pids:/\n4:memory:/jobs/7\n1:cpu:/\n9:name=systemd:/\n0::/\n"


def test_a_hybrid_host_shows_its_v1_controllers_and_the_unified_tree(tmp_path: Path) -> None:
    (tmp_path / "mountinfo").write_text(HYBRID)
    (tmp_path / "cgroup").write_text(HYBRID_OWN)
    found = cgroups.discover(str(tmp_path / "mountinfo"), str(tmp_path / "cgroup"))
    assert [(str(h.own), h.version, sorted(h.controllers)) for h in found] == [
        ("/sys/fs/cgroup/memory/jobs/7", 1, ["memory"]),
        ("/sys/fs/cgroup/pids", 1, ["pids"]),
        ("/sys/fs/cgroup/unified", 2, []),
    ]


def test_a_container_sees_its_own_cgroup_at_the_mount_root(tmp_path: Path) -> None:
    (tmp_path / "mountinfo").write_text(
        "50 40 0:40 /docker/abc /sys/fs/cgroup ro,nosuid - cgroup2 cgroup2 rw\n")
    (tmp_path / "cgroup").write_text("0::/docker/abc/sub\n")
    found = cgroups.discover(str(tmp_path / "mountinfo"), str(tmp_path / "cgroup"))
    assert [str(h.own) for h in found] == ["/sys/fs/cgroup/sub"]
    (tmp_path / "cgroup").write_text("0::/elsewhere\n")  # not under what the mount shows
    assert cgroups.discover(str(tmp_path / "mountinfo"), str(tmp_path / "cgroup")) == []


def test_no_writable_hierarchy_is_reported_with_the_reason(tmp_path: Path) -> None:
    assert not cgroups.CgroupHost([]).available
    assert "no cgroup hierarchy is mounted" in cgroups.CgroupHost([]).describe()
    not_a_dir = tmp_path / "file"  # nothing can be made below it, not even by root
    not_a_dir.write_text("")
    host = cgroups.CgroupHost([cgroups.Hierarchy(not_a_dir, 1, frozenset({"pids"}))])
    assert not host.available
    assert host.describe() == f"{not_a_dir} is not writable (Not a directory)"
    assert host.missing["memory"].startswith("no memory controller")


def test_the_status_line_matches_what_the_zygote_got() -> None:
    async def scenario() -> None:
        async with probes() as handle:
            layer = next(x for x in handle.sandbox["layers"] if x["name"] == "cgroup")
            assert layer["active"] == HOST.available == (handle.cgroups.group is not None)
            if not HOST.available:
                assert handle.sandbox["missing"]["cgroup"] == HOST.describe()
                return
            for directory in group_dirs(handle):
                procs = (directory / "cgroup.procs").read_text().split()
                assert str(handle.pid) in procs  # placed before it imported anything
            child, _ = await act(handle, "daemon")
            for directory in group_dirs(handle):  # born there, with its grandchild
                assert str(child.pid) in (directory / "cgroup.procs").read_text().split()

    run(scenario())


# -- limits, kill, no way in, nothing left ----------------------------------

@needs_cgroups
def test_a_fork_bomb_is_capped_by_its_cgroup() -> None:
    """Without the PID namespace (the Landlock path) RLIMIT_NPROC is not set, so only
    the cgroup stands between a 500-fork bomb and the host."""
    async def scenario() -> None:
        async with probes(SandboxPolicy(namespaces=False)) as handle:
            dirs = group_dirs(handle)
            pids_dir, memory_dir = hierarchy_dir(dirs, "pids"), hierarchy_dir(dirs, "memory")
            assert pids_dir is not None
            allowance = int((pids_dir / "pids.max").read_text())
            assert allowance == cgroups.ZYGOTE_PIDS
            child, result = await act(handle, "bomb")
            # The child's quota was added before it was born, and no more.
            assert int((pids_dir / "pids.max").read_text()) == allowance + PIDS
            assert result["forked"] + result["refused"] == 500
            assert 0 < result["refused"]
            assert int((pids_dir / "pids.current").read_text()) == allowance + PIDS
            events = dict(line.split() for line in
                          (pids_dir / "pids.events").read_text().splitlines())
            assert int(events["max"]) >= result["refused"]  # the cgroup refused them
            if memory_dir is not None:
                limit = next(memory_dir / n for n in ("memory.max", "memory.limit_in_bytes")
                             if (memory_dir / n).exists())
                assert int(limit.read_text()) == cgroups.ZYGOTE_MEMORY + MEMORY
            child.writer.close()  # the child returns; the zygote kills what it left
            await asyncio.wait_for(child.exited, 30)
            assert int((pids_dir / "pids.max").read_text()) == allowance  # quota given back

    run(scenario())


@needs_cgroups
def test_a_setsid_grandchild_dies_with_its_instance_cgroup(strays: list[int]) -> None:
    """No PID namespace (its end would take the grandchild anyway) and the zygote killed
    (it cannot clean up): the grandchild left its session and has no parent of ours; only
    the cgroup takes it. With the sandbox off it survives: the test can fail."""
    async def scenario(policy: SandboxPolicy) -> tuple[int, bool]:
        async with probes(policy) as handle:
            child, result = await act(handle, "daemon")
            assert result["sid"] != result["own_sid"]
            grandchild = result["grandchild"]  # no PID namespace: the host's pid
            strays.append(grandchild)
            assert psutil.Process(grandchild).status() != psutil.STATUS_ZOMBIE
            forker = psutil.Process(child.pid).ppid()
            os.kill(forker, signal.SIGKILL)
            await asyncio.wait_for(handle.lost(), 30)
            await asyncio.wait_for(child.exited, 30)
            return grandchild, await _gone(grandchild, wait_s=10.0 if policy.enabled else 0.0)

    grandchild, gone = run(scenario(SandboxPolicy(namespaces=False)))
    assert gone, f"the setsid() grandchild {grandchild} outlived its instance's cgroup"
    _, gone_without = run(scenario(SandboxPolicy(enabled=False)))
    assert not gone_without  # nothing else would have taken it


@needs_cgroups
@pytest.mark.parametrize("namespaces", [True, False], ids=["namespaces", "landlock"])
def test_agent_code_cannot_write_its_cgroup(namespaces: bool) -> None:
    async def scenario() -> None:
        async with probes(SandboxPolicy(namespaces=namespaces)) as handle:
            child, result = await act(handle, "write")
            outcome = result["outcome"]
            pids_dir = hierarchy_dir(group_dirs(handle), "pids")
            assert pids_dir is not None
            tried = [t for t in outcome if t.endswith("/pids.max") and str(pids_dir) in t]
            assert tried, outcome  # its own pids.max was among the targets
            opened = {t: o for t, o in outcome.items() if o == "written" or "opened" in o}
            assert not opened
            if not namespaces:  # visible, but not ours to write
                assert outcome[tried[0]] == "Permission denied"
            assert int((pids_dir / "pids.max").read_text()) == cgroups.ZYGOTE_PIDS + PIDS
            assert str(child.pid) in (pids_dir / "cgroup.procs").read_text().split()

    run(scenario())


@needs_cgroups
def test_cgroup_directories_go_with_their_zygote() -> None:
    async def scenario() -> list[Path]:
        async with probes() as handle:
            await act(handle, "bomb")  # its sleeping children stay behind in the group
            dirs = group_dirs(handle)
            assert all(d.is_dir() for d in dirs)
        return dirs

    assert not any(d.exists() for d in run(scenario()))


@needs_cgroups
def test_groups_of_a_dead_parent_are_swept_at_start(strays: list[int]) -> None:
    assert HOST.top is not None
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    strays.append(sleeper.pid)
    # A parent that crashed: its pid is ours with another start time (a reused pid).
    dead = cgroups.Group(tuple((h, d.parent / f"{os.getpid()}.1") for h, d in HOST.top.dirs))
    dead.make(frozenset({"pids", "memory"}))
    leaf = dead.child("z1").child("zygote")
    dead.child("z1").make(frozenset({"pids", "memory"}))
    leaf.make()
    leaf.add(sleeper.pid)
    cgroups.CgroupHost(cgroups.discover())  # what a starting supervisor does
    assert sleeper.wait(timeout=30) == -signal.SIGKILL
    assert not any(d.exists() for _, d in dead.dirs)


async def _gone(pid: int, wait_s: float) -> bool:
    """Whether ``pid`` is dead within ``wait_s`` (a zombie counts: its reaper is just slow)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.05)


@needs_cgroups
def test_an_unlimited_child_lifts_the_limit_until_it_is_gone(strays: list[int]) -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    strays.append(sleeper.pid)
    zygote = cgroups.ZygoteCgroups.start(sleeper.pid, HOST)
    try:
        assert zygote.layer[0], zygote.layer
        pids_dir = hierarchy_dir(group_dirs_of(zygote), "pids")
        assert pids_dir is not None
        zygote.reserve("a", pids=10, memory=MEMORY)
        zygote.reserve("b", pids=None, memory=MEMORY)
        assert (pids_dir / "pids.max").read_text().strip() == "max"
        zygote.release("b")
        assert int((pids_dir / "pids.max").read_text()) == cgroups.ZYGOTE_PIDS + 10
        zygote.release("a")
        zygote.release("a")  # twice: nothing more comes off
        assert int((pids_dir / "pids.max").read_text()) == cgroups.ZYGOTE_PIDS
    finally:
        assert zygote.close()
    assert sleeper.wait(timeout=30) == -signal.SIGKILL  # killed with its group


def group_dirs_of(zygote: cgroups.ZygoteCgroups) -> list[Path]:
    assert zygote.group is not None
    return [directory for _, directory in zygote.group.dirs]


@needs_cgroups
def test_what_the_layer_lacks_is_reported_missing(strays: list[int]) -> None:
    """A host with the pids controller and no memory one (as a v1 host without the memory
    hierarchy mounted): the layer holds, and status still says memory is missing."""
    only_pids = [h for h in cgroups.discover() if h.controllers == frozenset({"pids"})]
    if not only_pids:
        pytest.skip("no v1 pids hierarchy here to stand alone")
    host = cgroups.CgroupHost(only_pids)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    strays.append(sleeper.pid)
    zygote = cgroups.ZygoteCgroups.start(sleeper.pid, host)
    try:
        assert zygote.layer[0]
        assert set(zygote.gaps) == {"cgroup memory"}
        assert "missing: memory: no memory controller" in zygote.layer[1]
        report = {"enabled": True, "active": ["seccomp"], "missing": {}, "layers": []}
        shown = _with_layer(report, "cgroup", *zygote.layer, gaps=zygote.gaps)
        assert shown["active"] == ["seccomp", "cgroup"]
        assert shown["missing"] == zygote.gaps
    finally:
        assert zygote.close()
