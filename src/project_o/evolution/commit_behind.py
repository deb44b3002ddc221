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

import threading
from collections.abc import Callable

__all__ = ["CommitBehind"]


class CommitBehind:
    """At most one commit in flight; :meth:`wait` before the store is written again."""

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._then: Callable[[], None] | None = None

    def submit(self, commit: Callable[[], None], then: Callable[[], None]) -> None:
        """Start ``commit`` on a thread (after the one in flight); ``then`` once it is done."""
        self.wait()
        self._then = then
        self._thread = threading.Thread(target=self._run, args=(commit,),
                                        name="generation-commit", daemon=True)
        self._thread.start()

    def wait(self) -> None:
        """Until the commit in flight is done; then its ``then``, or its error raised."""
        if self._thread is None:
            return
        self._thread.join()
        self._thread = None
        error, self._error = self._error, None
        then, self._then = self._then, None
        if error is not None:
            raise error
        if then is not None:
            then()

    def _run(self, commit: Callable[[], None]) -> None:
        try:
            commit()
        except BaseException as exc:  # noqa: BLE001 - raised in the loop's thread by wait()
            self._error = exc
