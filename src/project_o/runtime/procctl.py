"""Linux process controls the runtime needs and the stdlib lacks (``prctl``).

* ``PR_SET_PDEATHSIG``: the kernel sends us a signal when our parent dies,
  so zygotes die with their supervisor and instances with their zygote.
  It fires when the parent *thread* that forked us exits: fork zygotes
  from a long-lived thread (the event loop's).
* ``PR_SET_CHILD_SUBREAPER``: orphaned descendants are re-parented to us
  instead of init, so the zygote can reap what an instance left behind.

And the two steps every zygote takes with a child that exits: look at it
without reaping (:func:`exited_child`: the zombie keeps its pid, and so its
process group id, reserved) and SIGKILL the group it led (:func:`kill_group`:
whatever it forked dies too), then reap.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
from typing import Final

__all__ = [
    "LIBC",
    "exited_child",
    "kill_group",
    "parent_death_signal",
    "prctl",
    "set_child_subreaper",
    "set_parent_death_signal",
]

# From <linux/prctl.h>.
PR_SET_PDEATHSIG: Final = 1
PR_GET_PDEATHSIG: Final = 2
PR_SET_CHILD_SUBREAPER: Final = 36

#: the C library (errno kept): the calls the stdlib lacks, here and in ``runtime.confine``
LIBC: Final = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def prctl(option: int, arg: int | ctypes.c_int | ctypes._Pointer[ctypes.c_int] = 0) -> int:
    """prctl(2) with one argument: its result, or OSError with the errno."""
    result = int(LIBC.prctl(option, arg, 0, 0, 0))
    if result < 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"prctl({option}) failed: {os.strerror(errno)}")
    return result


def set_parent_death_signal(
    signum: int = signal.SIGKILL, expected_parent: int | None = None
) -> None:
    """Ask for ``signum`` when the parent dies.

    If ``expected_parent`` is given and our parent is already someone else
    (it died before the prctl took effect, the classic race), exit at once
    with 128 + ``signum`` as if the signal had arrived.
    """
    prctl(PR_SET_PDEATHSIG, signum)
    if expected_parent is not None and os.getppid() != expected_parent:
        os._exit(128 + signum)


def parent_death_signal() -> int:
    """The signal currently requested for our parent's death (0 if none)."""
    value = ctypes.c_int(0)
    prctl(PR_GET_PDEATHSIG, ctypes.pointer(value))
    return value.value


def set_child_subreaper() -> None:
    """Become the reaper of orphaned descendants."""
    prctl(PR_SET_CHILD_SUBREAPER, 1)


def kill_group(pid: int) -> None:
    """SIGKILL the process group ``pid`` leads (after setsid), and ``pid`` itself.

    Gone already, or not ours: nothing to do. Never our own group, nor pid
    0 or 1 (``killpg(0)`` is the caller's group, ``kill(-1)`` everything):
    a pid a hostile peer reported cannot turn this on us.
    """
    if pid <= 1 or pid in (os.getpid(), os.getpgrp()):
        return
    for kill in (os.killpg, os.kill):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            kill(pid, signal.SIGKILL)


def exited_child() -> int | None:
    """The pid of a child that has exited, still unreaped (so its ids stay ours); or None."""
    try:
        info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return None
    return None if info is None or info.si_pid == 0 else info.si_pid
