"""Process checks the crash tests share: is it still running, wait until it is gone."""

from __future__ import annotations

import time

import psutil


def running(pid: int) -> bool:
    """Alive and not a zombie (a zombie has ended; only its parent's reaping is left)."""
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def assert_gone(pid: int, what: str, timeout: float = 10.0) -> None:
    """Wait until ``pid`` has ended; fail naming ``what`` if it outlives ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while running(pid):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} (pid {pid}) is still running after {timeout} s")
        time.sleep(0.01)  # the kernel closes its files a moment before it is a zombie
