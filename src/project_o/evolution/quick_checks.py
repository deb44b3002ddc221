"""An agent's quick checks, run on a candidate version before it serves anyone.

Agent authors declare them with ``@agent.check``::

    @agent.check
    def answers_arithmetic(client):          # client: agent.test_client()
        assert client.call("calc 2+2")["answer"] == "2+2 = 4"

The arbiter runs them in a separate, sandboxed process (scrubbed
environment, address-space and CPU limits, a wall-clock timeout), after the
candidate compiled and before its zygote starts: agent code never runs in
the supervisor, and a check that hangs or crashes only fails the candidate.
"""

from __future__ import annotations

import asyncio
import resource
import sys
import traceback
from pathlib import Path

from project_o.runtime.procctl import kill_group
from project_o.runtime.sandbox import scrubbed_env

__all__ = ["QUICK_CHECK_TIMEOUT", "run_quick_checks"]

#: seconds all of an agent's quick checks may take together
QUICK_CHECK_TIMEOUT = 30.0
#: address space of the checking process
QUICK_CHECK_MEMORY = 1024 * 1024 * 1024
#: characters of a failure kept in the rejection reason
MAX_REASON = 2000


async def run_quick_checks(agent: Path, *, timeout: float = QUICK_CHECK_TIMEOUT) -> str | None:
    """Run the checks of the agent at ``agent``; None if all pass, else why not."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "project_o.evolution.quick_checks", str(agent),
        env=scrubbed_env(), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        kill_group(process.pid)
        await process.wait()
        return f"its quick checks did not finish within {timeout:g} s"
    if process.returncode == 0:
        return None
    text = output.decode(errors="replace").strip()[-MAX_REASON:]
    return f"failed its quick checks (exit {process.returncode}): {text}"


def _main(agent_path: str) -> int:
    resource.setrlimit(resource.RLIMIT_AS, (QUICK_CHECK_MEMORY, QUICK_CHECK_MEMORY))
    from project_o.runtime.loader import load_agent
    from project_o.runtime.params_file import read_params

    agent = load_agent(agent_path)
    for check in agent.checks:
        try:
            check(agent.test_client(params=read_params(agent_path) or None))
        except Exception:  # noqa: BLE001 - any failure fails the candidate, with its traceback
            print(f"check {check.__name__} failed:\n{traceback.format_exc()}")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1]))
