"""The worker threads plain handlers run on: started as needed, never more than the OS allows.

::

    loop: _admit ── submit(job) ── a worker idle? ── yes ──► it takes the job
                                       │ no
                                       └─ start one ── RuntimeError (the task limit):
                                                       nothing is queued; the caller
                                                       keeps the request and serves
                                                       fewer at once
    worker: idle for IDLE_EXIT_S and not promised a job ──► it ends (a later job
            starts a thread again)

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

Memory after a burst. A worker that found no job for
:data:`IDLE_EXIT_S` ends: glibc gives back the pages its stack touched
when a thread ends, so a burst of 32 requests does not keep 32 stacks
resident for the life of the instance. An instance that never runs a
plain handler (a standby until it is promoted; an agent of ``async def``
handlers) starts no worker at all.
"""

from __future__ import annotations

import ctypes
import queue
import threading
from collections.abc import Callable
from typing import Final

__all__ = ["IDLE_EXIT_S", "MALLOC_ARENAS", "Workers", "share_malloc_arenas"]

#: malloc arenas the threads of an instance share (glibc's mallopt M_ARENA_MAX)
MALLOC_ARENAS: Final = 2
_M_ARENA_MAX: Final = -8
#: seconds a worker waits for a job before it ends (several requests' worth of
#: waiting: a steady load keeps its threads, a burst's extra ones go)
IDLE_EXIT_S: Final = 30.0


def share_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Cap glibc's malloc arenas at ``arenas``; False where the C library has no mallopt."""
    try:
        libc = ctypes.CDLL(None)
        return bool(libc.mallopt(_M_ARENA_MAX, arenas))
    except (OSError, AttributeError):  # not glibc: its allocator is not ours to tune
        return False

Job = Callable[[], None]


class Workers:
    """Daemon threads taking jobs from one queue; a new one only when none is idle.

    A worker that waits ``idle_exit_s`` seconds without a job ends.
    """

    def __init__(self, name: str, initializer: Callable[[], None] = lambda: None, *,
                 idle_exit_s: float = IDLE_EXIT_S) -> None:
        self._name = name
        self._initializer = initializer
        self._idle_exit_s = idle_exit_s
        # queue.Queue, not SimpleQueue: CPython 3.11's SimpleQueue.get(timeout=...)
        # can block for good when several threads wait on it and a put races a
        # timeout (seen here within a few hundred tries), which would lose a job.
        self._jobs: queue.Queue[Job | None] = queue.Queue()
        # One token per worker that finished a job and no submit has claimed
        # since: idle workers = tokens + jobs queued (each queued job has a
        # worker promised to it). Taking a token and queueing a job happen
        # under _lock, and so does a worker taking its token back to end.
        self._idle = threading.Semaphore(0)
        self._lock = threading.Lock()
        #: live workers (started and not ended)
        self.threads = 0
        self._started = 0

    def submit(self, job: Job) -> None:
        """Run ``job()`` on a worker; RuntimeError (nothing queued) if no thread can start."""
        with self._lock:
            if not self._idle.acquire(blocking=False):
                thread = threading.Thread(target=self._work, daemon=True,
                                          name=f"{self._name}_{self._started}")
                thread.start()  # raises before the job is queued
                self.threads += 1
                self._started += 1
            self._jobs.put(job)

    def stop(self) -> None:
        """Let every worker end once it is done with its job (a stuck one stays stuck)."""
        with self._lock:
            for _ in range(self.threads):
                self._jobs.put(None)

    def _work(self) -> None:
        self._initializer()
        while (job := self._next_job()) is not None:
            job()  # never raises: the instance's jobs report their own outcome
            self._idle.release()

    def _next_job(self) -> Job | None:
        """The next job; None when stopped or idle too long (the worker is then counted out)."""
        while True:
            try:
                job = self._jobs.get(timeout=self._idle_exit_s)
            except queue.Empty:
                with self._lock:
                    # An unclaimed token: nobody counts on this worker, it may go.
                    # None: every idle worker is promised to a queued job, this one too.
                    if self._idle.acquire(blocking=False):
                        self.threads -= 1
                        return None
                continue
            if job is None:
                with self._lock:
                    self.threads -= 1
            return job
