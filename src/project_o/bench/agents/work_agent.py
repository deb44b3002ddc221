"""A benchmark agent: works ``request["ms"]`` ms on the CPU, waits ``request["io_ms"]`` ms.

The CPU part is a busy wait, not ``time.sleep``: it holds the CPU and the
GIL like real handler work, so no server can overlap it by sleeping in
parallel. The I/O part is a ``time.sleep``, standing for a call to an LLM
or a tool: a server that runs handlers concurrently overlaps it.

    {"ms": 1} -> {"ok": true}          1 ms of CPU
    {"io_ms": 100} -> {"ok": true}     100 ms waiting
"""

from __future__ import annotations

import time
from typing import Any

from project_o import Agent

__all__ = ["agent", "spin"]

agent = Agent("bench-work")


def spin(ms: float) -> None:
    """Hold the CPU for ``ms`` milliseconds."""
    end = time.perf_counter() + ms / 1000
    while time.perf_counter() < end:
        pass


@agent.handler
def handle(ctx: Any, request: dict[str, Any]) -> dict[str, Any]:
    """Spin ``request["ms"]``, then sleep ``request["io_ms"]`` milliseconds (0: at once)."""
    spin(float(request.get("ms", 0)))
    io_ms = float(request.get("io_ms", 0))
    if io_ms:
        time.sleep(io_ms / 1000)
    return {"ok": True}
