"""The worker threads plain handlers run on: started as needed, never more than the OS allows.

::

    loop: _admit ── submit(job) ── a worker idle? ── yes ──► it takes the job
                                       │ no
                                       └─ start one ── RuntimeError (the task limit):
                                                       nothing is queued; the caller
                                                       keeps the request and serves
                                                       fewer at once

:class:`concurrent.futures.ThreadPoolExecutor` queues a job *before* it
tries to start a thread for it, so when the sandbox's task limit
(``RLIMIT_NPROC``, the cgroup's ``pids.max``) refuses the thread, the job
runs later on some other thread while the caller got an exception and no
future. Here a refused thread leaves nothing behind: the caller knows
exactly which requests run.

Address space. glibc gives each new thread that allocates an arena of its
own, up to 8 per core, each reserving 64 MiB of address space: under the
sandbox's address-space limit (1 GiB by default) a dozen or so threads
used it up, and ``pthread_create`` failed with most of the memory unused.
:func:`share_malloc_arenas` caps the arenas before any worker starts.
"""

from __future__ import annotations

import ctypes
import queue
import threading
from collections.abc import Callable
from typing import Final

__all__ = ["MALLOC_ARENAS", "Workers", "share_malloc_arenas"]

#: malloc arenas the threads of an instance share (glibc's mallopt M_ARENA_MAX)
MALLOC_ARENAS: Final = 2
_M_ARENA_MAX: Final = -8


def share_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Cap glibc's malloc arenas at ``arenas``; False where the C library has no mallopt."""
    try:
        libc = ctypes.CDLL(None)
        return bool(libc.mallopt(_M_ARENA_MAX, arenas))
    except (OSError, AttributeError):  # not glibc: its allocator is not ours to tune
        return False

Job = Callable[[], None]


class Workers:
    """Daemon threads taking jobs from one queue; a new one only when none is idle."""

    def __init__(self, name: str, initializer: Callable[[], None] = lambda: None) -> None:
        self._name = name
        self._initializer = initializer
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        # one token per worker that finished a job and waits for the next
        self._idle = threading.Semaphore(0)
        self._lock = threading.Lock()
        self.threads = 0

    def submit(self, job: Job) -> None:
        """Run ``job()`` on a worker; RuntimeError (nothing queued) if no thread can start."""
        with self._lock:
            if not self._idle.acquire(blocking=False):
                thread = threading.Thread(target=self._work, daemon=True,
                                          name=f"{self._name}_{self.threads}")
                thread.start()  # raises before the job is queued
                self.threads += 1
            self._jobs.put(job)

    def stop(self) -> None:
        """Let every worker end once it is done with its job (a stuck one stays stuck)."""
        for _ in range(self.threads):
            self._jobs.put(None)

    def _work(self) -> None:
        self._initializer()
        while (job := self._jobs.get()) is not None:
            job()  # never raises: the instance's jobs report their own outcome
            self._idle.release()
