"""An agent's quick checks, run on a candidate version before it serves anyone.

Agent authors declare them with ``@agent.check``::

    @agent.check
    def answers_arithmetic(client):          # client: agent.test_client()
        assert client.call("calc 2+2")["answer"] == "2+2 = 4"

The supervisor's evolution control runs them after the candidate compiled, in a child of a zygote
that imported the candidate (the one process core, :mod:`project_o.runtime.zygote`:
scrubbed environment, the sandbox every agent-code process enters, an
address-space limit) under a wall-clock timeout. Agent code never runs in
the supervisor, and a check that hangs or crashes only fails the candidate.

``python -m project_o.runtime.zygote --program project_o.evolution.quick_checks:load --agent A``
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from project_o.errors import AgentLoadError, InvalidArgument
from project_o.runtime.child import ChildPlan
from project_o.runtime.confine.policy import SandboxPolicy
from project_o.runtime.loader import load_agent
from project_o.runtime.params_file import read_params
from project_o.runtime.sandbox import Limits, scrubbed_env
from project_o.runtime.zygote_client import ExitStatus, ZygoteHandle

__all__ = ["CHECKS_PROGRAM", "QUICK_CHECK_TIMEOUT", "ChecksProgram", "load", "run_quick_checks"]

#: seconds all of an agent's quick checks may take together
QUICK_CHECK_TIMEOUT = 30.0
#: address space of the checking process
QUICK_CHECK_MEMORY = 1024 * 1024 * 1024
#: characters of a failure kept in the rejection reason
MAX_REASON = 2000
#: bytes the checking process may write to its output file (RLIMIT_FSIZE); only the
#: last MAX_OUTPUT_READ of them are ever read back
QUICK_CHECK_OUTPUT = 16 * 1024 * 1024
MAX_OUTPUT_READ = 64 * 1024
#: how a zygote names this program (``--program``)
CHECKS_PROGRAM: Final = "project_o.evolution.quick_checks:load"
#: the address space and what it may write are limited, as for any short-lived check run
_LIMITS: Final = Limits(memory_bytes=QUICK_CHECK_MEMORY, cpu_seconds=None, open_files=None,
                        file_size=QUICK_CHECK_OUTPUT, pids=None)


async def run_quick_checks(agent: Path, *, timeout: float = QUICK_CHECK_TIMEOUT) -> str | None:
    """Run the checks of the agent at ``agent``; None if all pass, else why not."""
    with tempfile.TemporaryDirectory(prefix="project-o-checks-") as scratch:
        output = Path(scratch) / "output.log"
        try:
            async with asyncio.timeout(timeout):
                status = await _run_checks(agent, output)
        except TimeoutError:
            return f"its quick checks did not finish within {timeout:g} s"
        except AgentLoadError as exc:
            status, text = None, f"{exc}\n{exc.traceback or ''}"
        else:
            text = _tail(output)
    if status is not None and status.exit_code == 0:
        return None
    code = "?" if status is None else status.exit_code if status.exit_code is not None \
        else -(status.signal or 0)
    return f"failed its quick checks (exit {code}): {text.strip()[-MAX_REASON:]}"


def _tail(output: Path) -> str:
    """The end of what the checks printed: a candidate may print without end."""
    try:
        with output.open("rb") as handle:
            handle.seek(max(0, handle.seek(0, 2) - MAX_OUTPUT_READ))
            return handle.read(MAX_OUTPUT_READ).decode(errors="replace")
    except OSError:
        return ""


async def _run_checks(agent: Path, output: Path) -> ExitStatus:
    zygote = await ZygoteHandle.start_program(
        CHECKS_PROGRAM, ["--agent", str(agent)], env=scrubbed_env(),
        name=f"quick-check zygote for {agent}",
        sandbox=SandboxPolicy(writable=(str(output.parent),)))
    try:
        child = await zygote.fork_child({"output": str(output)})
        child.writer.close()  # the checks report by exit status and output, not frames
        return await child.exited
    finally:
        await zygote.close()  # a child still running (a timeout) dies with it


class ChecksProgram:
    """Forks a child that runs the imported agent's quick checks."""

    def __init__(self, agent: Any, params: dict[str, Any] | None) -> None:
        self._agent = agent
        self._params = params

    def hello(self) -> dict[str, Any]:
        """The agent's name."""
        return {"agent": self._agent.name}

    def plan(self, request: dict[str, Any]) -> ChildPlan:
        """Where the child's output goes (the failure's text is read from there)."""
        output = request.get("output")
        if not isinstance(output, str):
            raise InvalidArgument(f"a quick-check request needs an output path, got {output!r}")
        return ChildPlan(_LIMITS, output=output)

    def run(self, plan: ChildPlan, channel_fd: int) -> int:
        """Run every check; 0 if all pass, else 1 after printing the first failure."""
        for check in self._agent.checks:
            try:
                check(self._agent.test_client(params=self._params))
            except Exception:  # noqa: BLE001 - any failure fails the candidate, with its traceback
                print(f"check {check.__name__} failed:\n{traceback.format_exc()}")
                return 1
        return 0


def load(argv: Sequence[str]) -> ChecksProgram:
    """Import the agent named on the command line (``--agent PATH``)."""
    parser = argparse.ArgumentParser(prog="quick-check program")
    parser.add_argument("--agent", required=True)
    path = parser.parse_args(argv).agent
    return ChecksProgram(load_agent(path), read_params(path) or None)
