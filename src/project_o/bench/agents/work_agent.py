"""A benchmark agent: busy-waits ``request["ms"]`` milliseconds, then answers.

A busy wait, not ``time.sleep``: it holds the CPU and the GIL like real
handler work, so neither the direct server nor the supervised instance can
overlap requests by sleeping in parallel.

    {"ms": 1} -> {"ok": true}
"""

from __future__ import annotations

import time
from typing import Any

from project_o import Agent

__all__ = ["agent"]

agent = Agent("bench-work")


@agent.handler
def handle(ctx: Any, request: dict[str, Any]) -> dict[str, Any]:
    """Spin for ``request["ms"]`` milliseconds (0: answer at once)."""
    end = time.perf_counter() + float(request.get("ms", 0)) / 1000
    while time.perf_counter() < end:
        pass
    return {"ok": True}
