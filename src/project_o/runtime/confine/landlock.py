"""Landlock: the file and network rules an unprivileged process can put on itself.

Used where namespaces are not available (no user namespaces for this user):
agent code may then read only what it must (Python, sys.path, its own code,
system directories), write only beneath its scratch directories and its own
directory in /tmp, make no TCP connection or bind (unless the network is
allowed), and -- ABI 6 -- signal no process and reach no abstract Unix
socket outside its domain. Landlock also refuses ptrace (so /proc/PID/mem
and /environ) of processes outside the domain. Raw syscalls through ctypes
(numbers are the same on every architecture).
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterable
from typing import Final

from project_o.runtime.confine import linux

__all__ = ["abi_version", "restrict"]

_CREATE_RULESET: Final = 444
_ADD_RULE: Final = 445
_RESTRICT_SELF: Final = 446
_CREATE_RULESET_VERSION: Final = 1
_RULE_PATH_BENEATH: Final = 1

_EXECUTE, _WRITE_FILE, _READ_FILE, _READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_REMOVE_DIR, _REMOVE_FILE, _MAKE_CHAR, _MAKE_DIR = 1 << 4, 1 << 5, 1 << 6, 1 << 7
_MAKE_REG, _MAKE_SOCK, _MAKE_FIFO, _MAKE_BLOCK = 1 << 8, 1 << 9, 1 << 10, 1 << 11
_MAKE_SYM, _REFER, _TRUNCATE, _IOCTL_DEV = 1 << 12, 1 << 13, 1 << 14, 1 << 15
_READ: Final = _EXECUTE | _READ_FILE | _READ_DIR
_WRITE: Final = (_WRITE_FILE | _REMOVE_DIR | _REMOVE_FILE | _MAKE_CHAR | _MAKE_DIR | _MAKE_REG
                 | _MAKE_SOCK | _MAKE_FIFO | _MAKE_BLOCK | _MAKE_SYM)
_FILE_ONLY: Final = _EXECUTE | _WRITE_FILE | _READ_FILE | _TRUNCATE | _IOCTL_DEV
_NET_BIND_TCP, _NET_CONNECT_TCP = 1 << 0, 1 << 1
_SCOPE_ABSTRACT_UNIX, _SCOPE_SIGNAL = 1 << 0, 1 << 1
#: system directories every process may read
SYSTEM_READ: Final = ("/usr", "/lib", "/lib64", "/bin", "/sbin", "/etc", "/proc", "/sys",
                      "/dev")
#: device files every process may write
DEVICES: Final = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def abi_version() -> int:
    """The kernel's Landlock ABI (0: not available)."""
    try:
        return linux.syscall(_CREATE_RULESET, None, ctypes.c_size_t(0),
                             ctypes.c_uint32(_CREATE_RULESET_VERSION))
    except OSError:
        return 0


def restrict(*, readable: Iterable[str], writable: Iterable[str], network: bool) -> str:
    """Restrict this process (and all it forks) for good; what is enforced, in words."""
    abi = abi_version()
    if abi < 1:
        raise OSError(95, "Landlock is not available in this kernel")
    handled = _READ | _WRITE | (_REFER if abi >= 2 else 0) | (_TRUNCATE if abi >= 3 else 0)
    if abi >= 5:
        handled |= _IOCTL_DEV
    attr = _RulesetAttr(handled_access_fs=handled)
    size = ctypes.sizeof(_RulesetAttr)
    if abi < 6:
        size -= 8  # no "scoped" field before ABI 6
    else:
        attr.scoped = _SCOPE_ABSTRACT_UNIX | _SCOPE_SIGNAL
    if abi >= 4 and not network:
        attr.handled_access_net = _NET_BIND_TCP | _NET_CONNECT_TCP  # and no port allowed
    if abi < 4:
        size = 8
    ruleset = linux.syscall(_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size),
                            ctypes.c_uint32(0))
    try:
        for path in _existing(readable):
            _allow(ruleset, path, _READ & handled)
        for path in _existing(writable):
            _allow(ruleset, path, handled)
        for path in _existing(DEVICES):
            _allow(ruleset, path, (_READ_FILE | _WRITE_FILE) & handled)
        linux.set_no_new_privs()
        linux.syscall(_RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(0))
    finally:
        os.close(ruleset)
    enforced = ["files"]
    if attr.handled_access_net:
        enforced.append("TCP")
    if attr.scoped:
        enforced.append("signals and abstract sockets")
    return f"ABI {abi}: " + ", ".join(enforced)


def _allow(ruleset: int, path: str, access: int) -> None:
    fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    try:
        if not os.path.isdir(path):
            access &= _FILE_ONLY
        rule = _PathBeneath(allowed_access=access, parent_fd=fd)
        linux.syscall(_ADD_RULE, ctypes.c_int(ruleset), ctypes.c_int(_RULE_PATH_BENEATH),
                      ctypes.byref(rule), ctypes.c_uint32(0))
    finally:
        os.close(fd)


def _existing(paths: Iterable[str]) -> list[str]:
    return sorted({os.path.realpath(p) for p in paths if os.path.exists(p)})
