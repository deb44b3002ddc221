"""The async twin of ``work_agent.py``: the same work, the wait awaited.

    {"ms": 1} -> {"ok": true}          1 ms of CPU (blocks the loop, as CPU work does)
    {"io_ms": 100} -> {"ok": true}     100 ms awaited (asyncio.sleep)
"""

from __future__ import annotations

import asyncio
from typing import Any

from project_o import Agent
from project_o.bench.agents.work_agent import spin

__all__ = ["agent"]

agent = Agent("bench-work-async")


@agent.handler
async def handle(ctx: Any, request: dict[str, Any]) -> dict[str, Any]:
    """Spin ``request["ms"]``, then await ``request["io_ms"]`` milliseconds."""
    spin(float(request.get("ms", 0)))
    io_ms = float(request.get("io_ms", 0))
    if io_ms:
        await asyncio.sleep(io_ms / 1000)
    return {"ok": True}
