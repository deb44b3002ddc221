"""An agent whose workflow's second step kills its own process, once.

Served by a real supervisor in ``test_workflow_crash.py``. Every step
appends a line to a log file under ``input["dir"]`` (fsynced), so the test
can count how often each step really ran, across processes::

    request {"dir", "mode"}  ──► ctx.workflows.run("pipeline", input=request)
        fetch   appends "fetch <pid>" to fetch.log            returns [1, 2, 3]
        crunch  appends "crunch <pid>" to crunch.log
                first attempt ever (no "crashed" marker yet): writes the marker, then
                    mode "exit": os._exit(CRASH_EXIT_CODE)
                    mode "hang": sleeps until the test kill -9s the process
                later attempts: returns the sum
        report  appends "report <pid>" to report.log          returns {"total", "pid"}

    request {"do": "status", "run_id"}  ──► ctx.workflows.status(run_id)
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from project_o import Agent

#: the exit code of the deliberate crash (distinct from the runtime's own codes)
CRASH_EXIT_CODE = 13
#: how long the "hang" mode sleeps: far longer than the test takes to kill it
HANG_SECONDS = 120.0

agent = Agent("workflow-crash")
pipeline = agent.workflow("pipeline")


def _append(path: Path, line: str) -> None:
    with open(path, "a") as log:
        log.write(line + "\n")
        log.flush()
        os.fsync(log.fileno())  # the count must survive the process dying right after


@pipeline.step
def fetch(ctx: Any, inputs: dict[str, Any]) -> list[int]:
    _append(Path(inputs["input"]["dir"]) / "fetch.log", f"fetch {os.getpid()}")
    return [1, 2, 3]


@pipeline.step
def crunch(ctx: Any, inputs: dict[str, Any]) -> int:
    folder = Path(inputs["input"]["dir"])
    _append(folder / "crunch.log", f"crunch {os.getpid()}")
    marker = folder / "crashed"
    if not marker.exists():
        _append(marker, str(os.getpid()))
        if inputs["input"].get("mode") == "hang":
            time.sleep(HANG_SECONDS)
        os._exit(CRASH_EXIT_CODE)
    return sum(inputs["fetch"])


@pipeline.step
def report(ctx: Any, inputs: dict[str, Any]) -> dict[str, Any]:
    _append(Path(inputs["input"]["dir"]) / "report.log", f"report {os.getpid()}")
    return {"total": inputs["crunch"], "pid": os.getpid()}


@agent.handler
def handle(ctx: Any, request: Any) -> Any:
    if request.get("do") == "status":
        return ctx.workflows.status(request["run_id"])
    return {"output": ctx.workflows.run("pipeline", input=request),
            "runs": ctx.workflows.runs()}
