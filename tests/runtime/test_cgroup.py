"""Per-instance cgroups: placement logic on a stand-in tree, limits on a real one if offered.

The stand-in is a plain directory laid out like a cgroup v2 mount; the
kernel's side (control files appearing on mkdir) is played by the test.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from project_o.runtime.cgroup import CgroupTree, cgroup_available, own_cgroup
from tests.runtime.harness import run, spawn, zygote

PID = 4242
CONTROL_FILES = ("memory.max", "memory.swap.max", "pids.max", "cgroup.procs")


def _tree(tmp_path: Path, enabled: str = "cpu memory pids") -> Path:
    (tmp_path / "cgroup.controllers").write_text("cpu io memory pids\n")
    service = tmp_path / "system.slice" / "supervisor.service"
    service.mkdir(parents=True)
    (tmp_path / "system.slice" / "cgroup.subtree_control").write_text(enabled + "\n")
    return tmp_path


def test_instance_cgroups_are_siblings_of_ours(tmp_path: Path) -> None:
    tree = CgroupTree(_tree(tmp_path), own="/system.slice/supervisor.service")
    assert tree.available
    assert tree.path_for(PID) == tmp_path / "system.slice" / f"project-o-{PID}"


@pytest.mark.parametrize("enabled", ["cpu memory", "pids", ""])
def test_missing_controllers_mean_no_cgroups(tmp_path: Path, enabled: str) -> None:
    tree = CgroupTree(_tree(tmp_path, enabled), own="/system.slice/supervisor.service")
    assert not tree.available
    assert tree.join(1 << 20, 10, pid=PID) is None


def test_a_hybrid_or_v1_host_has_no_cgroups(tmp_path: Path) -> None:
    _tree(tmp_path)
    (tmp_path / "cgroup.controllers").unlink()  # the v2 tree is not mounted at the root
    assert not CgroupTree(tmp_path, own="/system.slice/supervisor.service").available


def test_join_writes_the_limits_and_the_pid(tmp_path: Path) -> None:
    tree = CgroupTree(_tree(tmp_path), own="/system.slice/supervisor.service")
    path = tree.path_for(PID)
    assert path is not None
    path.mkdir()
    for name in CONTROL_FILES:  # what the kernel creates on mkdir
        (path / name).write_text("")
    assert tree.join(256 << 20, 64, pid=PID) == path
    written = {name: (path / name).read_text() for name in CONTROL_FILES}
    assert written == {
        "memory.max": str(256 << 20),
        "memory.swap.max": "0",
        "pids.max": "64",
        "cgroup.procs": str(PID),
    }
    tree.join(None, None, pid=PID)
    assert (path / "memory.max").read_text() == "max"


def test_own_cgroup_reads_the_unified_line(tmp_path: Path) -> None:
    proc = tmp_path / "cgroup"
    proc.write_text("4:memory:/legacy\n0::/user.slice/session-1.scope\n")
    assert own_cgroup(proc) == "/user.slice/session-1.scope"
    assert own_cgroup(tmp_path / "missing") is None


@pytest.mark.skipif(not cgroup_available(), reason="no writable cgroup v2 with memory+pids here")
def test_live_instance_gets_its_own_cgroup_with_the_limits() -> None:
    async def scenario() -> None:
        async with zygote() as z:
            peer = await spawn(z, limits={"memory_bytes": 300 << 20, "pids": 32})
            line = Path(f"/proc/{peer.pid}/cgroup").read_text()
            assert f"project-o-{peer.pid}" in line
            relative = line.strip().split("::", 1)[1].lstrip("/")
            cgroup_dir = Path("/sys/fs/cgroup") / relative
            assert (cgroup_dir / "memory.max").read_text().strip() == str(300 << 20)
            assert (cgroup_dir / "pids.max").read_text().strip() == "32"
            await peer.send("shutdown")
            await peer.exited()
            assert not cgroup_dir.exists()  # removed by the zygote after reaping

    run(scenario())
