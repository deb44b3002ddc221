"""Per-instance cgroup v2 limits (memory.max, pids.max), where the host allows it.

cgroup v2 lets no process live in a cgroup whose children have controllers
enabled, so an instance's cgroup is a *sibling* of the zygote's own::

    /sys/fs/cgroup/<base>/                 subtree_control has +memory +pids
        ├── <zygote's cgroup>/             the zygote (and supervisor) live here
        └── project-o-<pid>/               one per instance, created by the child
              memory.max, memory.swap.max = 0, pids.max, cgroup.procs

The forked child creates its cgroup and moves itself in before any agent
code runs; the zygote removes it (``cgroup.kill``, then ``rmdir``) once the
instance is reaped. Where cgroup v2 is not mounted at the root, lacks the
controllers, or is read-only (most containers), :func:`cgroup_available` is
False and the rlimits alone bound the instance.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from pathlib import Path
from typing import Final

__all__ = [
    "CGROUP_ROOT",
    "CgroupTree",
    "cgroup_available",
    "join_cgroup",
    "own_cgroup",
    "remove_cgroup",
]

CGROUP_ROOT: Final = Path("/sys/fs/cgroup")
_REQUIRED: Final = frozenset({"memory", "pids"})
_PREFIX: Final = "project-o-"
#: killed tasks leave a cgroup within milliseconds; give up after about 1 s
_RMDIR_TRIES: Final = 100
_RMDIR_PAUSE: Final = 0.01


def own_cgroup(proc_file: Path = Path("/proc/self/cgroup")) -> str | None:
    """This process's path in the v2 hierarchy (``/user.slice/...``), if any."""
    try:
        lines = proc_file.read_text().splitlines()
    except OSError:
        return None
    # The v2 hierarchy is the line with hierarchy id 0 and no controller list.
    return next((line[3:] for line in lines if line.startswith("0::")), None)


class CgroupTree:
    """Where instance cgroups go in one cgroup v2 mount, if they can go anywhere."""

    def __init__(self, root: Path = CGROUP_ROOT, own: str | None = None) -> None:
        self.root = root
        self.base = self._find_base(own if own is not None else own_cgroup())

    def _find_base(self, own: str | None) -> Path | None:
        if own is None or not (self.root / "cgroup.controllers").is_file():
            return None  # v1 or hybrid: the unified tree is not at the root
        path = self.root / own.lstrip("/")
        base = path if path == self.root else path.parent
        try:
            enabled = set((base / "cgroup.subtree_control").read_text().split())
        except OSError:
            return None
        if not _REQUIRED <= enabled or not os.access(base, os.W_OK):
            return None
        return base

    @property
    def available(self) -> bool:
        """Whether per-instance cgroups can be created here."""
        return self.base is not None

    def path_for(self, pid: int) -> Path | None:
        """Where the cgroup of instance ``pid`` lives (None without cgroup support)."""
        return None if self.base is None else self.base / f"{_PREFIX}{pid}"

    def join(self, memory_bytes: int | None, pids: int | None, pid: int = 0) -> Path | None:
        """Create instance ``pid``'s cgroup (0: this process) with limits and move it in.

        Returns the path, or None if cgroups are unavailable. Raises OSError
        if the host offered cgroups but refused this one.
        """
        path = self.path_for(pid or os.getpid())
        if path is None:
            return None
        path.mkdir(exist_ok=True)
        _write(path / "memory.max", "max" if memory_bytes is None else str(memory_bytes))
        # Without this the kernel swaps instead of enforcing memory.max.
        with contextlib.suppress(FileNotFoundError):
            _write(path / "memory.swap.max", "0")
        _write(path / "pids.max", "max" if pids is None else str(pids))
        _write(path / "cgroup.procs", str(pid))  # "0" means the writing process
        return path

    def remove(self, pid: int) -> None:
        """Kill whatever is left in instance ``pid``'s cgroup and remove it."""
        path = self.path_for(pid)
        if path is None or not path.is_dir():
            return
        with contextlib.suppress(OSError):
            _write(path / "cgroup.kill", "1")  # Linux >= 5.14
        for _ in range(_RMDIR_TRIES):  # EBUSY until the killed tasks are gone
            try:
                path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(_RMDIR_PAUSE)


@functools.cache
def _host() -> CgroupTree:
    return CgroupTree()


def cgroup_available(*, fresh: bool = False) -> bool:
    """Whether per-instance cgroups (memory.max, pids.max) can be created on this host.

    The answer is probed once; ``fresh`` probes again (after the process lost rights).
    """
    if fresh:
        _host.cache_clear()
    return _host().available


def join_cgroup(memory_bytes: int | None, pids: int | None) -> Path | None:
    """Move this process into a fresh cgroup of its own with these limits (or do nothing)."""
    return _host().join(memory_bytes, pids)


def remove_cgroup(pid: int) -> None:
    """Remove instance ``pid``'s cgroup, killing anything left in it."""
    _host().remove(pid)


def _write(path: Path, value: str) -> None:
    # O_TRUNC as a shell redirect does: harmless on cgroupfs, exact on a plain file.
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)
