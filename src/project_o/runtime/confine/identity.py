"""Who agent code runs as: never root, never the supervisor's uid.

* Started as root: a uid and gid of the zygote's own (:data:`UID_BASE` plus
  the zygote's pid, so no two live zygotes share one), no supplementary
  groups, every capability gone. Files the agent must read (its code, the
  Python installation, checkpoints) are shown to it through id-mapped
  read-only mounts, where root's files appear as its own (see ``mounts``).
* Started unprivileged: a user namespace mapping only our own uid and gid;
  it gives the capabilities to make the other namespaces, which are dropped
  again before agent code runs.
"""

from __future__ import annotations

import ctypes
import os
import signal
from typing import Final

from project_o.runtime import procctl
from project_o.runtime.confine import linux

__all__ = ["UID_BASE", "drop_capabilities", "enter_user_namespace", "idmap_namespace",
           "sandbox_ids", "switch_user"]

#: sandbox uids and gids start here: far above any system or login account
UID_BASE: Final = 1 << 22

_PR_GET_DUMPABLE: Final = 3
_PR_SET_DUMPABLE: Final = 4
_LINUX_CAPABILITY_VERSION_3: Final = 0x20080522
_SYS_CAPSET: Final = {"x86_64": 126, "aarch64": 91}


def sandbox_ids(uid: int | None, gid: int | None) -> tuple[int, int]:
    """The uid and gid a root zygote drops to (given, or its own from its pid)."""
    own = UID_BASE + os.getpid()
    return (uid or own, gid or uid or own)


def switch_user(uid: int, gid: int) -> None:
    """Become ``uid``/``gid`` for good (real, effective and saved), with no groups."""
    if uid == 0 or gid == 0:
        raise PermissionError("agent code never runs as root")
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if os.getresuid() != (uid, uid, uid):
        raise PermissionError(f"could not become uid {uid}")


def enter_user_namespace() -> None:
    """A new user namespace where only our own uid and gid are mapped (unprivileged start)."""
    uid, gid = os.getuid(), os.getgid()
    linux.unshare(linux.CLONE_NEWUSER)
    # A process that is not dumpable (it made itself so, or it changed its uid) finds
    # its /proc files owned by a root the new namespace does not map: it could not
    # write its own maps. Dumpable for these three writes, as it was after.
    dumpable = procctl.prctl(_PR_GET_DUMPABLE)
    if not dumpable:
        procctl.prctl(_PR_SET_DUMPABLE, 1)
    try:
        linux.write_control("/proc/self/setgroups", "deny")
        linux.write_control("/proc/self/uid_map", f"{uid} {uid} 1\n")
        linux.write_control("/proc/self/gid_map", f"{gid} {gid} 1\n")
    finally:
        if not dumpable:
            procctl.prctl(_PR_SET_DUMPABLE, 0)


def idmap_namespace(uid: int, gid: int) -> int:
    """An fd of a user namespace mapping root to ``uid``/``gid``: for id-mapped mounts.

    A helper child makes the namespace; we (root) write its maps, keep an fd
    to it, and kill the helper.
    """
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the helper: only our code, then killed
        try:
            os.close(ready_r)
            linux.unshare(linux.CLONE_NEWUSER)
            os.write(ready_w, b"1")
            signal.pause()
        finally:
            os._exit(0)
    os.close(ready_w)
    try:
        if os.read(ready_r, 1) != b"1":
            raise OSError("the id-map helper could not make a user namespace")
        linux.write_control(f"/proc/{pid}/uid_map", f"0 {uid} 1\n")
        linux.write_control(f"/proc/{pid}/setgroups", "deny")
        linux.write_control(f"/proc/{pid}/gid_map", f"0 {gid} 1\n")
        return os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(ready_r)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


def drop_capabilities() -> None:
    """Empty the effective, permitted and inheritable capability sets of this process."""
    import platform

    number = _SYS_CAPSET.get(platform.machine())
    if number is None:
        raise OSError(38, "capset: syscall number unknown on this architecture")
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    linux.syscall(number, ctypes.byref(header), ctypes.byref(data))
