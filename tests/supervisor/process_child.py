"""A supervised OS process for the tree's tests: the exit status from the event loop.

Translates the exit status into an :class:`~project_o.supervisor.spec.ExitReason`
and accepts a ``cause`` on :meth:`kill`, so that whoever kills a child for a
reason (a hang seen by missed heartbeats) gets that reason into the exit report.
"""

from __future__ import annotations

import asyncio
import signal
from typing import Any

from project_o.supervisor.spec import ExitReason


class _Signalled:
    """What both children share: SIGTERM, and SIGKILL with the cause remembered."""

    _cause: str | None = None

    def terminate(self) -> None:
        """Send SIGTERM (nothing if it has already ended)."""
        self._signal(signal.SIGTERM)

    def kill(self, cause: str | None = None) -> None:
        """Send SIGKILL; ``cause`` ("hang: no heartbeat for 5.0 s") goes into the exit reason."""
        if cause and self._cause is None:
            self._cause = cause
        self._signal(signal.SIGKILL)

    def _signal(self, signum: int) -> None:
        raise NotImplementedError


class ProcessChild(_Signalled):
    """A child that is an :class:`asyncio.subprocess.Process`."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def spawn(cls, program: str, *args: str, **kwargs: Any) -> ProcessChild:
        """Start ``program args...`` (keyword arguments go to ``create_subprocess_exec``)."""
        return cls(await asyncio.create_subprocess_exec(program, *args, **kwargs))

    @property
    def handle(self) -> int:
        """The process id."""
        return self.process.pid

    @property
    def pid(self) -> int:
        """The process id."""
        return self.process.pid

    async def wait(self) -> ExitReason:
        """Wait for the process to end and say how it ended."""
        returncode = await self.process.wait()
        return ExitReason.from_returncode(returncode, cause=self._cause)

    def _signal(self, signum: int) -> None:
        if self.process.returncode is not None:
            return
        try:
            self.process.send_signal(signum)
        except ProcessLookupError:
            pass  # it ended between our check and the signal: fine, wait() will say how

    def __repr__(self) -> str:
        return f"<ProcessChild pid={self.process.pid} returncode={self.process.returncode}>"
