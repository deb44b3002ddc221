"""Generation commits written on a thread while the next generation is bred.

::

    generation g settled ─► submit(commit g, then report g) ─► thread: commit (fsync)
    breeding g+1 (the loop, meanwhile; the fsync holds no GIL)
    the next write to the store (g+1's evaluations), or the run's end ─► wait():
        commit g done ─► report g ─► go on        (its error, if any, raised here)

Committing a generation is one transaction that ends in an fsync: on a
real disk, as long as breeding a small generation. Breeding the next one
reads nothing the commit writes (the loop keeps its state in memory), so
the two overlap. The store sees the same writes in the same order as
before: generation g's commit always ends before g+1's evaluations are
recorded, and a generation is reported only once it is on disk. A run
killed while a commit is in flight resumes from the generation before it,
whose evaluations are reused, as after a kill during breeding.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

__all__ = ["CommitBehind"]


class CommitBehind:
    """At most one commit in flight; :meth:`wait` before the store is written again."""

    def __init__(self) -> None:
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="generation-commit")
        self._in_flight: tuple[Future[None], Callable[[], None]] | None = None

    def submit(self, commit: Callable[[], None], then: Callable[[], None]) -> None:
        """Start ``commit`` on the thread (after the one in flight); ``then`` once it is done."""
        self.wait()
        self._in_flight = self._thread.submit(commit), then

    def wait(self) -> None:
        """Until the commit in flight is done; then its ``then``, or its error raised."""
        if self._in_flight is None:
            return
        (done, then), self._in_flight = self._in_flight, None
        done.result()  # raises the commit's error here, in the loop's thread
        then()
