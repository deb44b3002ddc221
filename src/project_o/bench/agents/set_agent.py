"""A benchmark agent: each request makes ``request["sets"]`` durable ``ctx.memory.set`` calls.

    {"sets": 10, "size": 100} -> {"written": 10}

Each set returns once the supervisor's WAL made it durable (sync
durability: after the group-commit fsync), as in any agent.
"""

from __future__ import annotations

import os
from typing import Any

from project_o import Agent

__all__ = ["agent"]

agent = Agent("bench-sets")

_VALUE = "x" * 4096


@agent.handler
def handle(ctx: Any, request: dict[str, Any]) -> dict[str, Any]:
    """Write ``sets`` keys of ``size`` characters each."""
    count, size = int(request.get("sets", 1)), int(request.get("size", 100))
    value = _VALUE[:size]
    prefix = f"k{os.getpid()}"
    for n in range(count):
        ctx.memory.set(f"{prefix}:{n}", value)
    return {"written": count}
