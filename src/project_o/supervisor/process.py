"""Ready-made :class:`~project_o.supervisor.spec.Child` implementations for OS processes.

::

    ProcessChild  ── an asyncio subprocess we spawned; exit status from the event loop
    PidChild      ── any pid: death seen at once through a pidfd; the exit
                     status too when the pid is our own child (we reap it)

Both translate the exit status into an
:class:`~project_o.supervisor.spec.ExitReason`, and both accept a ``cause``
on :meth:`kill` so that whoever kills a child for a reason (a hang seen by
missed heartbeats) gets that reason into the exit report.
"""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

from project_o.errors import InvalidArgument
from project_o.supervisor.spec import ExitReason

__all__ = ["PidChild", "ProcessChild"]


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


class PidChild(_Signalled):
    """A child known only by its pid, watched through a pidfd (Linux 5.3+).

    A pidfd becomes readable the moment the process ends, with no polling
    and no race with pid reuse (the fd pins the process we opened). If the
    pid is our own child we reap it and report its exit status; otherwise
    (forked by a zygote, say) the status belongs to its parent and the
    reason says so.
    """

    def __init__(self, pid: int) -> None:
        try:
            self._pidfd = os.pidfd_open(pid)
        except ProcessLookupError as exc:
            raise InvalidArgument(
                f"no process with pid {pid}: it must be running when it is handed to PidChild"
            ) from exc
        self.pid = pid
        self._reason: ExitReason | None = None
        self._ended = asyncio.Event()
        asyncio.get_running_loop().add_reader(self._pidfd, self._on_exit)

    @property
    def handle(self) -> int:
        """The process id."""
        return self.pid

    async def wait(self) -> ExitReason:
        """Wait for the process to end and say how it ended."""
        await self._ended.wait()
        assert self._reason is not None  # set before _ended
        return self._reason

    def _signal(self, signum: int) -> None:
        if self._ended.is_set():
            return
        try:
            # Through the pidfd, not the pid: never hits a recycled pid.
            signal.pidfd_send_signal(self._pidfd, signum)
        except ProcessLookupError:
            pass

    def _on_exit(self) -> None:
        asyncio.get_running_loop().remove_reader(self._pidfd)
        self._reason = self._reap()
        os.close(self._pidfd)
        self._ended.set()

    def _reap(self) -> ExitReason:
        try:
            reaped, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            reaped = 0  # not our child, or someone else reaped it
        if reaped == 0:
            return ExitReason.from_status(None, None, cause=self._cause)
        if os.WIFSIGNALED(status):
            return ExitReason.from_status(None, os.WTERMSIG(status), cause=self._cause)
        return ExitReason.from_status(os.waitstatus_to_exitcode(status), None, cause=self._cause)

    def __repr__(self) -> str:
        return f"<PidChild pid={self.pid} ended={self._ended.is_set()}>"
