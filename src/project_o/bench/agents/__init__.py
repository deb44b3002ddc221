"""Agent files the benchmarks serve (loaded by path, like any user agent).

    state_agent.py   builds a memory state of a chosen size; answers with its digest
    set_agent.py     each request makes a chosen number of durable ctx.memory.set calls
    set_agent_async.py    the same, awaited in an ``async def`` handler
    work_agent.py    a handler that busy-waits and sleeps chosen numbers of milliseconds
    work_agent_async.py   the same, as an ``async def`` handler
    hostile_agent.py tries to get out of its sandbox, at import time and on request
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["HOSTILE_AGENT", "SET_AGENT", "SET_AGENT_ASYNC", "STATE_AGENT", "WORK_AGENT",
           "WORK_AGENT_ASYNC"]

_HERE = Path(__file__).resolve().parent
SET_AGENT = _HERE / "set_agent.py"
SET_AGENT_ASYNC = _HERE / "set_agent_async.py"
STATE_AGENT = _HERE / "state_agent.py"
WORK_AGENT = _HERE / "work_agent.py"
WORK_AGENT_ASYNC = _HERE / "work_agent_async.py"
HOSTILE_AGENT = _HERE / "hostile_agent.py"
