"""The file system agent code sees: a private mount namespace built from the policy.

::

    /                   as the host has it, private (nothing propagates back)
    /proc               a fresh proc of the zygote's PID namespace: its own processes only
    /tmp                a private tmpfs, size-capped (a full /tmp stops there)
    hidden dirs         an empty read-only tmpfs in their place (the vault, the home of
                        whoever started it, /sys/fs/cgroup: the cgroups the parent made
                        are not even visible)
    exposed dirs        read-only binds of what the agent must read: its code, the Python
                        installation and sys.path, checkpoints; writable binds of its
                        scratch directories

When the supervisor is root, agent code runs as a uid of its own, which may
not traverse root's private directories: exposed directories are id-mapped
(root's files appear as the agent's own, read-only unless writable), so the
agent reads its code and nothing else of root's.

Covers and binds are applied shallowest first, so a directory exposed inside
a hidden one (checkpoints inside the vault) shows through it, and a hidden
one inside an exposed one (the vault inside the working directory) stays hidden.
"""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from project_o.runtime.confine import linux
from project_o.runtime.confine.policy import SandboxPolicy

__all__ = ["exposed_paths", "private_view"]

_TMPFS_FLAGS = linux.MS_NOSUID | linux.MS_NODEV
# The root, and /tmp (a script run from /tmp has it on sys.path): never shown whole.
_NEVER_EXPOSED = frozenset({"/", "/tmp"})
#: where cgroup hierarchies are mounted: covered, whatever the policy says
_CGROUP_FS = "/sys/fs/cgroup"


@dataclass(frozen=True)
class _Step:
    path: str
    kind: str  # "tmp" | "cover" | "ro" | "rw"
    tree_fd: int = -1
    directory: bool = True


def exposed_paths(policy: SandboxPolicy, agent_paths: tuple[str, ...] = (),
                  also_hidden: tuple[str, ...] = ()) -> tuple[str, ...]:
    """Directories (or files) agent code must read: Python, sys.path, its code, policy's."""
    wanted = [sys.prefix, sys.base_prefix, sys.exec_prefix, *sys.path, *agent_paths,
              *policy.readonly, _package_root()]
    paths = {os.path.realpath(p) for p in wanted if p and os.path.exists(p)} - _NEVER_EXPOSED
    # An entry that contains a hidden directory (the working directory holding the
    # vault) is exposed too, and the hidden one covered again inside it; what is
    # exposed inside the hidden one (checkpoints) is bound again on top.
    hidden = {os.path.realpath(p) for p in (*policy.hidden, *also_hidden)}
    return _outermost(paths, hidden)


def private_view(policy: SandboxPolicy, *, home: str | None, userns_fd: int | None,
                 agent_paths: tuple[str, ...] = ()) -> list[str]:
    """Build the view in the current (new) mount namespace; what was done, in words.

    ``home`` is covered too (the starting user's: a Python installation under it is
    exposed again); ``userns_fd`` id-maps the exposed directories.
    """
    linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)
    steps = _plan(policy, home, agent_paths)
    done: list[str] = []
    try:
        for step in steps:
            if step.kind in ("ro", "rw"):
                linux.idmap_tree(step.tree_fd, userns_fd, readonly=step.kind == "ro")
        for step in steps:
            _apply(step, policy)
        covers = [s.path for s in steps if s.kind == "cover"]
        for path in covers:  # read-only once the mount points inside them exist
            linux.mount(None, path, None, linux.MS_REMOUNT | linux.MS_RDONLY | _TMPFS_FLAGS)
    finally:
        for step in steps:
            if step.tree_fd >= 0:
                os.close(step.tree_fd)
    done.append(f"/tmp private ({policy.tmp_bytes >> 20} MiB)")
    done.append("hidden: " + (", ".join(covers) or "nothing"))
    done.append(f"{sum(s.kind == 'ro' for s in steps)} read-only, "
                f"{sum(s.kind == 'rw' for s in steps)} writable binds"
                + (", id-mapped" if userns_fd is not None else ""))
    return done


def mount_proc() -> None:
    """A proc of the current PID namespace on /proc (call as its first process)."""
    linux.mount("proc", "/proc", "proc", linux.MS_NOSUID | linux.MS_NODEV | linux.MS_NOEXEC)


def _plan(policy: SandboxPolicy, home: str | None,
          agent_paths: tuple[str, ...]) -> list[_Step]:
    hidden = {os.path.realpath(p) for p in policy.hidden if os.path.isdir(p)}
    if home and os.path.isdir(home) and os.path.realpath(home) != "/":
        hidden.add(os.path.realpath(home))
    if os.path.isdir(_CGROUP_FS):
        hidden.add(_CGROUP_FS)
    writable = {os.path.realpath(p) for p in policy.writable if os.path.exists(p)}
    readonly = set(exposed_paths(policy, agent_paths, tuple(hidden))) - hidden - writable
    steps = [_Step("/tmp", "tmp"), *(_Step(p, "cover") for p in hidden if p != "/tmp")]
    try:
        steps += [_Step(p, "ro", linux.clone_tree(p), os.path.isdir(p)) for p in readonly]
        steps += [_Step(p, "rw", linux.clone_tree(p), os.path.isdir(p)) for p in writable]
    except BaseException:
        for step in steps:
            if step.tree_fd >= 0:
                os.close(step.tree_fd)
        raise
    # Shallowest first; at equal depth a cover first, so binds land on top of it.
    return sorted(steps, key=lambda s: (s.path.count("/"), s.kind not in ("tmp", "cover")))


def _apply(step: _Step, policy: SandboxPolicy) -> None:
    if step.kind == "tmp":
        linux.mount("tmpfs", "/tmp", "tmpfs", _TMPFS_FLAGS,
                    f"size={policy.tmp_bytes},mode=1777,nr_inodes=65536")
        return
    if step.kind == "cover":
        _mount_point(step.path, True)  # inside the private /tmp, say
        linux.mount("tmpfs", step.path, "tmpfs", _TMPFS_FLAGS, "size=1m,mode=0755")
        return
    _mount_point(step.path, step.directory)
    linux.attach_tree(step.tree_fd, step.path)


def _mount_point(path: str, directory: bool) -> None:
    """Make sure ``path`` exists to mount on (inside a cover it does not, yet)."""
    if os.path.lexists(path):
        return
    target = Path(path)
    # The supervisor runs under umask 077; mount points must stay traversable by the
    # agent's uid, so these are made with an umask that keeps the modes asked for.
    old = os.umask(0o022)
    try:
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        with contextlib.suppress(FileExistsError):
            if directory:
                target.mkdir(mode=0o755)
            else:
                target.touch(mode=0o644)
    finally:
        os.umask(old)


def _outermost(paths: set[str], hidden: set[str]) -> tuple[str, ...]:
    """``paths`` without those a kept one already shows (unless a hidden one is between)."""
    ordered = sorted(paths, key=lambda p: (p.count("/"), p))
    kept: list[str] = []
    for path in ordered:
        shown = any(_within(path, k) and not any(_within(h, k) and _within(path, h)
                                                 for h in hidden) for k in kept)
        if not shown:
            kept.append(path)
    return tuple(kept)


def _within(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def _package_root() -> str:
    import project_o

    return str(Path(project_o.__file__).resolve().parent.parent)
