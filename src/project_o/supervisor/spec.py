"""What a supervision tree is told about its children, and what it reports.

A tree never knows what its children *are*. It holds a :class:`ChildSpec`
per child (how to start it, when to restart it, how to stop it) and talks
to the running thing only through the small :class:`Child` protocol::

    ChildSpec(id, start, restart, shutdown)
        │
        │  await spec.start()                      (tree)
        ▼
    Child ── wait() ──► ExitReason(normal, detail, exit_code, signal)
      ▲
      └── terminate()  polite stop (SIGTERM for a process)
      └── kill()       immediate stop (SIGKILL for a process)

Anything that implements the protocol can be supervised: a part of the
supervisor itself (:class:`~project_o.supervisor.parts.Part`: the vault,
the agent host, the evolution control, the gateway), an OS process, or another
:class:`~project_o.supervisor.tree.SupervisionTree`.
"""

from __future__ import annotations

import signal as _signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal, Protocol, runtime_checkable

from project_o.errors import InvalidArgument

__all__ = [
    "DEFAULT_SHUTDOWN_MS",
    "Child",
    "ChildInfo",
    "ChildSpec",
    "ChildStatus",
    "EventKind",
    "ExitReason",
    "Restart",
    "Shutdown",
    "Strategy",
]

#: OTP's default shutdown for a worker child: 5000 ms of grace after the
#: polite signal before the kill.
DEFAULT_SHUTDOWN_MS = 5000

Restart = Literal["permanent", "transient", "temporary"]
"""permanent: always restarted; transient: only after an abnormal exit; temporary: never."""

Shutdown = Literal["brutal_kill", "infinity"] | int
"""``"brutal_kill"``: kill at once; an int: milliseconds of grace between
terminate() and kill(); ``"infinity"``: terminate() and wait as long as it
takes (OTP's advice for a child that is itself a tree)."""

_RESTARTS: frozenset[str] = frozenset({"permanent", "transient", "temporary"})


class Strategy(StrEnum):
    """Which siblings are restarted together when one child has to be restarted."""

    ONE_FOR_ONE = "one_for_one"  # only the child that exited
    ONE_FOR_ALL = "one_for_all"  # every child
    REST_FOR_ONE = "rest_for_one"  # the child and those started after it


class ChildStatus(StrEnum):
    """Where a child stands, as :meth:`SupervisionTree.which_children` reports it."""

    STARTING = "starting"  # its start() is being awaited
    RUNNING = "running"
    STOPPING = "stopping"  # the tree asked it to stop and is waiting
    STOPPED = "stopped"  # stopped by the tree (terminate_child, shutdown, group restart)
    EXITED = "exited"  # ended on its own and, by its restart type, stays down


class EventKind(StrEnum):
    """The kinds of event a tree reports to its ``on_event`` callback."""

    START = "start"  # first start of a child
    RESTART = "restart"  # a child started again (automatic or restart_child)
    EXIT = "exit"  # a child ended on its own
    STOP = "stop"  # a child ended because the tree stopped it
    KILL = "kill"  # a child ignored terminate() for its whole grace period
    START_FAILED = "start_failed"  # spec.start() raised
    ESCALATE = "escalate"  # restart intensity exceeded: the tree gives up


@dataclass(frozen=True)
class ExitReason:
    """How a child ended.

    ``normal`` is what restart types look at: a *transient* child is
    restarted only when it is False. ``detail`` is for humans ("exit code 1",
    "killed by SIGKILL", "hang: no heartbeat for 5.0 s").
    """

    normal: bool
    detail: str
    exit_code: int | None = None
    signal: int | None = None

    def __str__(self) -> str:
        return self.detail

    @classmethod
    def from_status(
        cls, exit_code: int | None, signal: int | None, *, cause: str | None = None
    ) -> ExitReason:
        """From a process's exit code *or* terminating signal (as a zygote reports it).

        Only exit code 0 is normal. ``cause`` prefixes the detail when the
        one who killed the process knows why (for example a missed heartbeat).
        """
        if signal is not None:
            detail = f"killed by {_signal_name(signal)}"
        elif exit_code is not None:
            detail = "exited normally (exit code 0)" if exit_code == 0 else f"exit code {exit_code}"
        else:
            detail = "ended (exit status not visible to us)"
        if cause:
            detail = f"{cause} ({detail})"
        return cls(exit_code == 0 and signal is None, detail, exit_code, signal)

    @classmethod
    def from_returncode(cls, returncode: int, *, cause: str | None = None) -> ExitReason:
        """From ``Popen.returncode`` / ``Process.returncode`` (negative: killed by a signal)."""
        if returncode < 0:
            return cls.from_status(None, -returncode, cause=cause)
        return cls.from_status(returncode, None, cause=cause)

    @classmethod
    def shutdown(cls, detail: str = "shutdown") -> ExitReason:
        """A deliberate, orderly stop (OTP's ``shutdown``): normal."""
        return cls(True, detail)

    @classmethod
    def crashed(cls, detail: str) -> ExitReason:
        """Any abnormal end that is not described by an exit status."""
        return cls(False, detail)

    @classmethod
    def hang(cls, silent_for: float) -> ExitReason:
        """The child stopped answering (missed heartbeats) and was killed."""
        return cls(False, f"hang: no heartbeat for {silent_for:.1f} s")


def _signal_name(number: int) -> str:
    try:
        return _signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


@runtime_checkable
class Child(Protocol):
    """The protocol a supervised thing implements.

    ``wait()`` may be awaited more than once and returns the same reason
    each time; ``terminate()`` and ``kill()`` are harmless after the child
    has ended (a tree may call them on a child that is already dying).
    """

    @property
    def handle(self) -> object:
        """What identifies the running child: a pid, or the child object itself."""
        ...

    async def wait(self) -> ExitReason:
        """Resolve when the child has ended, with how it ended."""
        ...

    def terminate(self) -> None:
        """Ask the child to stop (SIGTERM for a process)."""
        ...

    def kill(self) -> None:
        """Stop the child now (SIGKILL for a process)."""
        ...


@dataclass(frozen=True)
class ChildSpec:
    """How to start, restart and stop one child (OTP's child specification).

    ``start`` is awaited to get a running :class:`Child`; it is called
    again for every restart, so it must start a *fresh* child each time.
    """

    id: str
    start: Callable[[], Awaitable[Child]]
    restart: Restart = "permanent"
    shutdown: Shutdown = DEFAULT_SHUTDOWN_MS

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise InvalidArgument(f"child id must be a non-empty string, got {self.id!r}")
        if not callable(self.start):
            raise InvalidArgument(f"child {self.id!r}: start must be callable, got {self.start!r}")
        if self.restart not in _RESTARTS:
            raise InvalidArgument(
                f"child {self.id!r}: restart must be one of {sorted(_RESTARTS)}, "
                f"got {self.restart!r}"
            )
        _check_shutdown(self.id, self.shutdown)


def _check_shutdown(child_id: str, shutdown: object) -> None:
    if shutdown in ("brutal_kill", "infinity"):
        return
    # bool is an int subclass; shutdown=True is surely a mistake.
    if isinstance(shutdown, int) and not isinstance(shutdown, bool) and shutdown >= 0:
        return
    raise InvalidArgument(
        f"child {child_id!r}: shutdown must be 'brutal_kill', 'infinity' or a grace "
        f"period in milliseconds (int >= 0), got {shutdown!r}"
    )


@dataclass(frozen=True)
class ChildInfo:
    """One row of :meth:`SupervisionTree.which_children`."""

    id: str
    handle: object  # pid for a process, the tree for a nested tree, None when not running
    restarts: int  # how many times it was started after its first start
    status: ChildStatus
    last_exit: ExitReason | None  # how its latest run ended, if it has ended
