"""The context a handler receives with each request.

::

    supervisor ── request {id, input} ──► runtime ── handler(ctx, input) ──► output
                                                      │
                                                      └─ ctx.request_id   the request's id
                                                         ctx.memory       durable key-value memory
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from project_o.agent.kv import Memory

__all__ = ["Context"]


@dataclass(frozen=True, slots=True)
class Context:
    """Everything a handler may use besides its input.

    ``memory`` writes are durable when they return (see
    :class:`~project_o.agent.kv.Memory`); ``request_id`` identifies the
    request in logs and in the supervisor's records.
    """

    request_id: Any
    memory: Memory
