"""The plain handlers' worker threads: one per job in flight, and a refused thread queues nothing."""

from __future__ import annotations

import threading

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
