"""What a zygote's children run: the program protocol, and how a zygote is started.

Kept apart from :mod:`project_o.runtime.zygote` (the zygote process itself)
so that a parent -- the supervisor, the evaluator pool -- can start
zygotes without importing what runs inside them.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from project_o.runtime.confine.policy import SandboxPolicy
from project_o.runtime.sandbox import Limits

__all__ = [
    "DEFAULT_PROGRAM",
    "ZYGOTE_MODULE",
    "ChildPlan",
    "ChildProgram",
    "ProgramLoader",
    "zygote_command",
]

#: what a zygote runs when no --program is given: agent instances
DEFAULT_PROGRAM: Final = "project_o.runtime.instance_program:load"
#: the zygote's entry point, run with ``python -m``
ZYGOTE_MODULE: Final = "project_o.runtime.zygote"


@dataclass(frozen=True)
class ChildPlan:
    """What one fork request asks for, checked in the zygote before it forks."""

    limits: Limits
    #: the program's own reading of the request, handed to :meth:`ChildProgram.run`
    work: Any = None
    #: copied into the ``exited`` report (e.g. the instance id)
    report: dict[str, Any] = field(default_factory=dict)
    #: a file the child's stdout and stderr go to (appended); None keeps the zygote's
    output: str | None = None


class ChildProgram(Protocol):
    """What a zygote's children run; loaded (agent or task imported) once, in the zygote."""

    def hello(self) -> dict[str, Any]:
        """Fields of the zygote's ``hello`` frame, besides its pid."""
        ...

    def plan(self, request: dict[str, Any]) -> ChildPlan:
        """Read a fork request (in the zygote); InvalidArgument refuses it."""
        ...

    def run(self, plan: ChildPlan, channel_fd: int) -> int:
        """Run in the sandboxed child, the parent's end on ``channel_fd``; the exit code."""
        ...


#: what ``--program MOD:ATTR`` names: builds the program from the rest of the command line
ProgramLoader = Callable[[Sequence[str]], ChildProgram]


def zygote_command(program: str, args: Sequence[str], control_fd: int, *,
                   python: str = sys.executable, parent_pid: int | None = None,
                   sandbox: SandboxPolicy | None = None,
                   cgroup_gate: bool = False) -> list[str]:
    """The command line that starts a zygote running ``program`` with its ``args``.

    The caller passes ``control_fd`` (one end of an AF_UNIX socketpair)
    with ``pass_fds``; the zygote exits at once if ``parent_pid`` is
    already gone (default: the calling process). ``sandbox`` is the policy
    it confines itself with before it imports the program's code (default:
    every layer the machine allows, nothing hidden but root's home).
    ``cgroup_gate``: the zygote waits for one byte on the control socket
    before anything else (its parent moves it into its cgroup meanwhile).
    """
    parent = os.getpid() if parent_pid is None else parent_pid
    policy = sandbox or SandboxPolicy()
    return [python, "-m", ZYGOTE_MODULE, "--program", program, "--control-fd", str(control_fd),
            "--parent-pid", str(parent), "--sandbox", policy.to_json(),
            *(["--cgroup-gate"] if cgroup_gate else []), *args]
