"""The supervisor's parts (vault, agent host, evolution control, gateway) as children of its tree.

A :class:`Part` adapts something that lives inside the supervisor's own
event loop to the :class:`~project_o.supervisor.spec.Child` protocol::

    tree.start ──► spec.start() ──► Part(handle, stop=..., failure=...)
    tree.stop  ──► part.terminate() ──► await stop() ──► wait() -> shutdown (normal)
    failure resolves (a vault that cannot write, a gateway that stopped serving)
        ─────► wait() -> crashed (abnormal); the tree escalates and stops the
        parts that depend on it first; whoever owns the tree then cleans up the
        failed part (Vault.close is idempotent). Once the tree asked the part to
        stop, how its stop ends is how the part ended: a gateway's server ends
        then too, and that is no failure.

The part owns the one task that runs its ``stop``: ``wait()`` reports how
it ended, so nothing it does ends unobserved.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from project_o.supervisor.spec import ExitReason

__all__ = ["Part"]


class Part:
    """One in-process part of the supervisor, supervised by its tree."""

    def __init__(
        self, handle: object, stop: Callable[[], Awaitable[None]], *,
        failure: asyncio.Future[BaseException] | None = None,
    ) -> None:
        self._handle = handle
        self._stop = stop
        self._ended: asyncio.Future[ExitReason] = asyncio.get_running_loop().create_future()
        self._stopper: asyncio.Task[None] | None = None
        if failure is not None:
            failure.add_done_callback(self._on_failure)

    @property
    def handle(self) -> object:
        """The part itself (the Vault, the AgentHost, ...)."""
        return self._handle

    async def wait(self) -> ExitReason:
        """Resolve when the part has stopped (normal) or failed (abnormal)."""
        return await asyncio.shield(self._ended)

    def terminate(self) -> None:
        """Stop the part: its ``stop`` runs once, in a task this part owns."""
        if self._stopper is None:
            self._stopper = asyncio.get_running_loop().create_task(self._run_stop())

    def kill(self) -> None:
        """In-process parts have no harder stop than their ``stop``."""
        self.terminate()

    async def _run_stop(self) -> None:
        try:
            await self._stop()
        except Exception as exc:  # noqa: BLE001 -- reported as how the part ended
            self._end(ExitReason.crashed(f"stop() raised {exc!r}"))
        else:
            self._end(ExitReason.shutdown())

    def _on_failure(self, failure: asyncio.Future[BaseException]) -> None:
        if failure.cancelled() or self._stopper is not None:
            return  # stopping: _run_stop says how it ended
        self._end(ExitReason.crashed(str(failure.result())))

    def _end(self, reason: ExitReason) -> None:
        if not self._ended.done():
            self._ended.set_result(reason)
