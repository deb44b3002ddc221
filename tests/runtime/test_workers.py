"""The plain handlers' worker threads: one per job in flight, and a refused thread queues nothing."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

import pytest

from project_o.runtime.workers import Workers


def test_jobs_in_flight_together_each_get_a_thread() -> None:
    workers = Workers("t")
    barrier = threading.Barrier(4, timeout=10)
    passed = threading.Semaphore(0)

    def job() -> None:  # each waits for the other three: only four threads let them pass
        barrier.wait()
        passed.release()

    for _ in range(4):
        workers.submit(job)
    assert all(passed.acquire(timeout=10) for _ in range(4))
    assert workers.threads == 4
    workers.stop()


def test_a_thread_the_os_refuses_leaves_no_job_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[str] = []
    workers = Workers("t")

    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", refuse)  # the kernel's EAGAIN, as Python says it
    with pytest.raises(RuntimeError, match="can't start"):
        workers.submit(lambda: ran.append("refused"))
    monkeypatch.undo()
    done = threading.Event()
    workers.submit(lambda: (ran.append("next"), done.set()))  # type: ignore[func-returns-value]
    assert done.wait(10)
    assert ran == ["next"] and workers.threads == 1  # the refused job never ran
    workers.stop()


def _until(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Wait for ``condition`` (a bound on waiting, not a speed check)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def _alive(prefix: str) -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(prefix)]


def test_an_idle_worker_ends_and_a_later_job_still_runs() -> None:
    workers = Workers("idle-end", idle_exit_s=0.05)
    ran: list[int] = []
    done = threading.Event()
    workers.submit(lambda: (ran.append(1), done.set()))  # type: ignore[func-returns-value]
    assert done.wait(10)
    assert _until(lambda: workers.threads == 0 and not _alive("idle-end_"))
    done.clear()
    workers.submit(lambda: (ran.append(2), done.set()))  # type: ignore[func-returns-value]
    assert done.wait(10)
    assert ran == [1, 2] and workers.threads <= 1
    workers.stop()
    assert _until(lambda: not _alive("idle-end_"))


def test_no_job_is_lost_while_workers_come_and_go() -> None:
    # Workers end almost as soon as they are idle, so submits keep meeting
    # workers that are just deciding to end: every job must still run once.
    workers = Workers("churn", idle_exit_s=0.0005)
    count = 400
    ran = threading.Semaphore(0)
    seen: list[int] = []
    rng = random.Random(12)
    for n in range(count):
        workers.submit(lambda n=n: (seen.append(n), ran.release()))  # type: ignore[misc]
        if rng.random() < 0.3:
            time.sleep(rng.random() / 1000)
    assert all(ran.acquire(timeout=10) for _ in range(count))
    assert sorted(seen) == list(range(count))
    assert _until(lambda: workers.threads == 0 and not _alive("churn_"))


def test_workers_that_never_got_a_job_were_never_started() -> None:
    before = threading.active_count()
    workers = Workers("never")
    workers.stop()
    assert workers.threads == 0 and threading.active_count() == before
