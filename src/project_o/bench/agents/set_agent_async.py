"""The async twin of ``set_agent.py``: each set awaited (``await ctx.memory.aset``).

    {"sets": 10, "size": 100} -> {"written": 10}

An ``async def`` handler serves up to 64 requests at once on the
instance's loop (a plain one: 32 threads), so more writes share each
group-commit fsync.
"""

from __future__ import annotations

import os
from typing import Any

from project_o import Agent

__all__ = ["agent"]

agent = Agent("bench-sets-async")

_VALUE = "x" * 4096


@agent.handler
async def handle(ctx: Any, request: dict[str, Any]) -> dict[str, Any]:
    """Write ``sets`` keys of ``size`` characters each, one after the other."""
    count, size = int(request.get("sets", 1)), int(request.get("size", 100))
    value = _VALUE[:size]
    prefix = f"k{os.getpid()}"
    for n in range(count):
        await ctx.memory.aset(f"{prefix}:{n}", value)
    return {"written": count}
