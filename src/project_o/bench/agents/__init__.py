"""Agent files the benchmarks serve (loaded by path, like any user agent).

    state_agent.py   builds a memory state of a chosen size; answers with its digest
    work_agent.py    a handler that busy-waits and sleeps chosen numbers of milliseconds
    work_agent_async.py   the same, as an ``async def`` handler
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["STATE_AGENT", "WORK_AGENT", "WORK_AGENT_ASYNC"]

_HERE = Path(__file__).resolve().parent
STATE_AGENT = _HERE / "state_agent.py"
WORK_AGENT = _HERE / "work_agent.py"
WORK_AGENT_ASYNC = _HERE / "work_agent_async.py"
