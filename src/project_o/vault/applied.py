"""The answer of a durable write that also applied what it wrote.

A store's facade journals a write, then applies it to the store
(``project_o.agent.store``). The instance runtime applies journaled writes
itself, in WAL order, so the writes of concurrent requests reach the
stores in the order the WAL holds them; its durable write returns
:data:`APPLIED`, and the facade then leaves the store alone. It lives this
low so the LLM layer, which sits below the agent layer, can test for it.
"""

from __future__ import annotations

from typing import Final

__all__ = ["APPLIED"]


class _Applied:
    """The type of :data:`APPLIED` (one instance)."""

    def __repr__(self) -> str:
        return "APPLIED"


#: returned by a durable write that applied the write to the stores too
APPLIED: Final = _Applied()
