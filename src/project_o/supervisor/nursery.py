"""A task group that lives as long as its owner: no task without someone awaiting it.

:class:`asyncio.TaskGroup` owns tasks inside one ``async with`` block; the
agent host lives from ``start()`` to ``stop()``, across many calls. A
:class:`Nursery` (trio's name) holds one group open in one task for that
whole time::

    open() ──► runner task: async with TaskGroup() as group ... until close()
    spawn(coro) ──► group.create_task(coro)      owned: awaited by the group
    a task raises ──► the group cancels the others ──► ``failed`` resolves with the error
    close() ──► every task left is cancelled and awaited; then the runner ends
    close_nowait() ──► the same, not awaited (from a task of the nursery itself)

Tasks must handle the errors they expect; one that escapes is a bug, and
it reaches the owner through ``failed`` rather than a log line nobody reads.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["Nursery", "NurseryClosed"]

T = TypeVar("T")


class NurseryClosed(RuntimeError):
    """spawn() after close() or after a task failed: nothing would own the task."""


class Nursery:
    """One long-lived TaskGroup; ``failed`` resolves if a task in it raises."""

    def __init__(self, name: str) -> None:
        self.name = name
        loop = asyncio.get_running_loop()
        #: the error of the first task that failed (an ExceptionGroup from the TaskGroup)
        self.failed: asyncio.Future[BaseException] = loop.create_future()
        self._group: asyncio.TaskGroup | None = None
        self._opened = asyncio.Event()
        self._closing = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[Any]] = set()

    async def open(self) -> None:
        """Start holding the group; returns once spawn() may be called."""
        self._runner = asyncio.create_task(self._hold(), name=f"nursery {self.name}")
        await self._opened.wait()

    def spawn(self, coro: Coroutine[Any, Any, T], name: str | None = None) -> asyncio.Task[T]:
        """Run ``coro`` in the group; it is cancelled at close() if still running."""
        group = self._group
        if group is None or self._closing.is_set() or self.failed.done():
            coro.close()
            raise NurseryClosed(f"{self.name}: the nursery is closed; nothing would own {name}")
        task = group.create_task(coro, name=name)
        self._running.add(task)  # to cancel at close(); the group owns its outcome
        task.add_done_callback(self._running.discard)
        return task

    @property
    def open_for_tasks(self) -> bool:
        """Whether spawn() would accept a task."""
        return self._group is not None and not self._closing.is_set() and not self.failed.done()

    async def close(self) -> None:
        """Cancel what still runs, wait for it all to end; idempotent."""
        self.close_nowait()
        if self._runner is not None:
            await self._runner

    def close_nowait(self) -> None:
        """Cancel what still runs without waiting for it (for a task of this nursery itself,
        which :meth:`close` would wait for forever); :meth:`close` then awaits the end."""
        self._closing.set()

    async def _hold(self) -> None:
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                self._opened.set()
                await self._closing.wait()
                for task in list(self._running):
                    task.cancel()
        except BaseException as exc:  # noqa: BLE001 -- reported to the owner, not lost
            self._opened.set()
            if not self.failed.done() and not isinstance(exc, asyncio.CancelledError):
                self.failed.set_result(exc)
        finally:
            self._group = None

