"""Linux process controls the runtime needs and the stdlib lacks (``prctl``).

* ``PR_SET_PDEATHSIG``: the kernel sends us a signal when our parent dies,
  so zygotes die with their supervisor and instances with their zygote.
  It fires when the parent *thread* that forked us exits: fork zygotes
  from a long-lived thread (the event loop's).
* ``PR_SET_CHILD_SUBREAPER``: orphaned descendants are re-parented to us
  instead of init, so the zygote can reap what an instance left behind.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
from typing import Final

__all__ = ["parent_death_signal", "set_child_subreaper", "set_parent_death_signal"]

# From <linux/prctl.h>.
PR_SET_PDEATHSIG: Final = 1
PR_GET_PDEATHSIG: Final = 2
PR_SET_CHILD_SUBREAPER: Final = 36

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _prctl(option: int, arg: int | ctypes.c_int | ctypes._Pointer[ctypes.c_int]) -> None:
    if _libc.prctl(option, arg, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"prctl({option}) failed: {os.strerror(errno)}")


def set_parent_death_signal(
    signum: int = signal.SIGKILL, expected_parent: int | None = None
) -> None:
    """Ask for ``signum`` when the parent dies.

    If ``expected_parent`` is given and our parent is already someone else
    (it died before the prctl took effect, the classic race), exit at once
    with 128 + ``signum`` as if the signal had arrived.
    """
    _prctl(PR_SET_PDEATHSIG, signum)
    if expected_parent is not None and os.getppid() != expected_parent:
        os._exit(128 + signum)


def parent_death_signal() -> int:
    """The signal currently requested for our parent's death (0 if none)."""
    value = ctypes.c_int(0)
    _prctl(PR_GET_PDEATHSIG, ctypes.pointer(value))
    return value.value


def set_child_subreaper() -> None:
    """Become the reaper of orphaned descendants."""
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
