"""Agent files the benchmarks serve (loaded by path, like any user agent).

    state_agent.py   builds a memory state of a chosen size; answers with its digest
    work_agent.py    a handler that busy-waits a chosen number of milliseconds
    hostile_agent.py tries to get out of its sandbox, at import time and on request
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["HOSTILE_AGENT", "STATE_AGENT", "WORK_AGENT"]

_HERE = Path(__file__).resolve().parent
STATE_AGENT = _HERE / "state_agent.py"
WORK_AGENT = _HERE / "work_agent.py"
HOSTILE_AGENT = _HERE / "hostile_agent.py"
