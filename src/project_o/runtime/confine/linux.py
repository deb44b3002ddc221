"""The Linux calls the sandbox needs and Python 3.11's ``os`` lacks, through libc (ctypes).

``unshare``, ``mount`` and the new mount API (``open_tree``, ``mount_setattr``,
``move_mount``: an id-mapped read-only view of a directory), ``prctl`` for
``PR_SET_NO_NEW_PRIVS`` (the libc handle and ``prctl`` are
:mod:`project_o.runtime.procctl`'s). Each raises :class:`OSError` with the
errno, never returns a status to check.
"""

from __future__ import annotations

import ctypes
import os
import platform
from typing import Final

from project_o.runtime.procctl import LIBC as _libc
from project_o.runtime.procctl import prctl

__all__ = [
    "CLONE_NEWIPC",
    "CLONE_NEWNET",
    "CLONE_NEWNS",
    "CLONE_NEWPID",
    "CLONE_NEWUSER",
    "CLONE_NEWUTS",
    "MS_NODEV",
    "MS_NOEXEC",
    "MS_NOSUID",
    "MS_PRIVATE",
    "MS_RDONLY",
    "MS_REC",
    "MS_REMOUNT",
    "attach_tree",
    "clone_tree",
    "idmap_tree",
    "mount",
    "set_no_new_privs",
    "syscall",
    "unshare",
    "write_control",
]

# <linux/sched.h>
CLONE_NEWNS: Final = 0x00020000
CLONE_NEWUTS: Final = 0x04000000
CLONE_NEWIPC: Final = 0x08000000
CLONE_NEWUSER: Final = 0x10000000
CLONE_NEWPID: Final = 0x20000000
CLONE_NEWNET: Final = 0x40000000
CLONE_NEWCGROUP: Final = 0x02000000
CLONE_NEWTIME: Final = 0x00000080
#: every flag that makes a namespace (what the seccomp filter refuses in clone)
NAMESPACE_FLAGS: Final = (CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER
                          | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWCGROUP | CLONE_NEWTIME)

# <linux/mount.h>
MS_RDONLY: Final = 1
MS_NOSUID: Final = 2
MS_NODEV: Final = 4
MS_NOEXEC: Final = 8
MS_REMOUNT: Final = 32
MS_REC: Final = 16384
MS_PRIVATE: Final = 1 << 18

_OPEN_TREE_CLONE: Final = 1
_OPEN_TREE_CLOEXEC: Final = os.O_CLOEXEC
_AT_EMPTY_PATH: Final = 0x1000
_AT_RECURSIVE: Final = 0x8000
_MOVE_MOUNT_F_EMPTY_PATH: Final = 0x00000004
_MOUNT_ATTR_RDONLY: Final = 0x00000001
_MOUNT_ATTR_NOSUID: Final = 0x00000002
_MOUNT_ATTR_NODEV: Final = 0x00000004
_MOUNT_ATTR_IDMAP: Final = 0x00100000

# syscall numbers of the calls libc has no wrapper for (the same on x86_64 and arm64)
_NR: Final = {"open_tree": 428, "move_mount": 429, "mount_setattr": 442}
# <linux/prctl.h>
_PR_SET_NO_NEW_PRIVS: Final = 38

_libc.syscall.restype = ctypes.c_long


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def _check(result: int, what: str) -> int:
    if result < 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")
    return result


def syscall(number: int, *args: object) -> int:
    """A raw system call; the result, or OSError."""
    return _check(int(_libc.syscall(ctypes.c_long(number), *args)), f"syscall {number}")


def unshare(flags: int) -> None:
    """Leave the given namespaces for new ones (``CLONE_NEW*``)."""
    _check(_libc.unshare(ctypes.c_int(flags)), f"unshare({flags:#x})")


def mount(source: str | None, target: str, fstype: str | None, flags: int,
          data: str | None = None) -> None:
    """mount(2)."""
    _check(_libc.mount(_c(source), _c(target), _c(fstype), ctypes.c_ulong(flags), _c(data)),
           f"mount {target}")


def clone_tree(path: str) -> int:
    """A detached copy of the mount at ``path`` (with what is mounted below it): an fd."""
    if platform.machine() not in ("x86_64", "aarch64"):
        raise OSError(38, "open_tree: syscall number unknown on this architecture")
    return syscall(_NR["open_tree"], ctypes.c_int(-100), _c(path),
                   ctypes.c_uint(_OPEN_TREE_CLONE | _OPEN_TREE_CLOEXEC | _AT_RECURSIVE))


def idmap_tree(tree_fd: int, userns_fd: int | None, *, readonly: bool) -> None:
    """Make a detached tree read-only and/or seen through ``userns_fd``'s id mapping."""
    attr = _MountAttr(attr_set=_MOUNT_ATTR_NOSUID | _MOUNT_ATTR_NODEV)
    if readonly:
        attr.attr_set |= _MOUNT_ATTR_RDONLY
    if userns_fd is not None:
        attr.attr_set |= _MOUNT_ATTR_IDMAP
        attr.userns_fd = userns_fd
    syscall(_NR["mount_setattr"], ctypes.c_int(tree_fd), b"",
            ctypes.c_uint(_AT_EMPTY_PATH | _AT_RECURSIVE), ctypes.byref(attr),
            ctypes.c_size_t(ctypes.sizeof(attr)))


def attach_tree(tree_fd: int, target: str) -> None:
    """Mount a detached tree at ``target``."""
    syscall(_NR["move_mount"], ctypes.c_int(tree_fd), b"", ctypes.c_int(-100), _c(target),
            ctypes.c_uint(_MOVE_MOUNT_F_EMPTY_PATH))


def set_no_new_privs() -> None:
    """PR_SET_NO_NEW_PRIVS: no exec ever gains privileges (setuid bits, file caps)."""
    prctl(_PR_SET_NO_NEW_PRIVS, 1)


def write_control(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to a kernel control file (``/proc``, cgroupfs) in one write(2)."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _c(text: str | None) -> bytes | None:
    return None if text is None else os.fsencode(text)
