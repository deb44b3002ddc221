"""Generation commits on a thread: in order, reported once done, errors raised in the loop."""

from __future__ import annotations

import threading

import pytest

from project_o.evolution.commit_behind import CommitBehind


def test_commits_run_in_order_and_each_is_reported_after_it_is_done() -> None:
    log: list[str] = []
    started = threading.Event()
    release = threading.Event()

    def slow_commit() -> None:
        started.set()
        release.wait(10)
        log.append("commit 0")

    commits = CommitBehind()
    commits.submit(slow_commit, lambda: log.append("report 0"))
    started.wait(10)
    log.append("breeding 1")  # the loop goes on while the commit is in flight
    release.set()
    commits.submit(lambda: log.append("commit 1"), lambda: log.append("report 1"))
    commits.wait()
    commits.wait()  # nothing in flight: nothing happens
    assert log == ["breeding 1", "commit 0", "report 0", "commit 1", "report 1"]


def test_a_failed_commit_raises_in_the_waiting_thread_and_is_not_reported() -> None:
    reported: list[int] = []

    def broken() -> None:
        raise OSError("disk full")

    commits = CommitBehind()
    commits.submit(broken, lambda: reported.append(0))
    with pytest.raises(OSError, match="disk full"):
        commits.wait()
    assert reported == []
    commits.wait()  # raised once
