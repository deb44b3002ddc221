"""The context a handler receives with each request.

::

    supervisor ── request {id, input} ──► runtime ── handler(ctx, input) ──► output
                                                      │
                                                      ├─ ctx.request_id   the request's id
                                                      ├─ ctx.memory       durable memory (key-value,
                                                      │                   semantic recall, blocks)
                                                      ├─ ctx.history      episodic log of conversations
                                                      ├─ ctx.params       evolvable parameters (genes)
                                                      ├─ ctx.tools        the agent's tools, callable
                                                      ├─ ctx.llm          OpenAI-compatible chat (or None)
                                                      ├─ ctx.workflows    durable multi-step workflows
                                                      ├─ ctx.emit(event)  stream an event to the caller
                                                      │                   (await ctx.aemit(event))
                                                      └─ ctx.evolve(hypothesis, source=, operator=,
                                                                    params=)  propose a new version

Built by :class:`project_o.agent.kit.AgentKit`; fields a given agent does
not use stay ``None``. An ``async def`` handler awaits the ``a``-prefixed
forms of what may wait (``await ctx.memory.aset(k, v)``, ``ctx.tools.acall``,
``ctx.llm.achat``, ``ctx.workflows.arun``, ``ctx.aemit``, ``ctx.aevolve``),
so its event loop serves other requests meanwhile.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from project_o.agent.memory import Memory

__all__ = ["Context"]


def _no_stream(event: Any) -> None:
    """Where events go when the caller did not ask for a stream."""


def _no_evolution(hypothesis: str, **candidate: Any) -> dict[str, Any]:
    """``ctx.evolve`` where no supervisor listens (tests, a TestClient)."""
    return {"experiment_id": None, "status": "ignored",
            "reason": "no supervisor runs this agent, so nothing can evolve it"}


@dataclass(frozen=True, slots=True)
class Context:
    """Everything a handler may use besides its input.

    ``memory`` writes are durable when they return (see
    :class:`~project_o.agent.memory.Memory`); ``request_id`` identifies the
    request in logs and in the supervisor's records.
    """

    request_id: Any
    memory: Memory
    history: Any = None
    params: Any = None
    tools: Any = None
    llm: Any = None
    workflows: Any = None
    emit: Callable[[Any], None] = _no_stream
    #: ``evolve(hypothesis, source=None, operator=None, params=None)`` asks the
    #: supervisor to test a new version; returns ``{experiment_id, status, reason}``
    evolve: Callable[..., dict[str, Any]] = _no_evolution

    # -- awaitable forms, for ``async def`` handlers ----------------------
    # ctx.memory.aset/adelete/aremember/aforget, ctx.tools.acall,
    # ctx.llm.achat and ctx.workflows.arun live on those objects.

    async def aemit(self, event: Any) -> None:
        """:attr:`emit`, awaitable: the event is on its way when it returns."""
        self.emit(event)

    async def aevolve(self, hypothesis: str, **candidate: Any) -> dict[str, Any]:
        """:attr:`evolve`, awaitable: waits for the supervisor's answer on a worker thread."""
        return await asyncio.to_thread(functools.partial(self.evolve, hypothesis, **candidate))
