"""Everything an agent needs at run time, built in one place.

The instance runtime and :class:`~project_o.agent.dsl.TestClient` both ask
an :class:`AgentKit` for the agent's durable stores (to restore, replay and
checkpoint them) and for the :class:`~project_o.agent.context.Context` of
each request, so a handler behaves the same under test and in production::

    kit = AgentKit(agent, journal)      journal(op, data): durable on return
    kit.state                           StateBook: restore / replay / checkpoint
    kit.context(request_id)             what the handler receives
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from project_o.agent.context import Context
from project_o.agent.kv import KVReplica, Memory
from project_o.agent.store import Journal, StateBook

if TYPE_CHECKING:
    from project_o.agent.dsl import Agent

__all__ = ["AgentKit"]


class AgentKit:
    """The stores and per-request context of one agent in one process."""

    def __init__(self, agent: Agent, journal: Journal) -> None:
        self.agent = agent
        self.journal = journal
        self.kv = KVReplica()
        self.state = StateBook([self.kv])
        self.memory = Memory(self.kv, journal)

    def context(self, request_id: Any, **extra: Any) -> Context:
        """The context for one request."""
        return Context(request_id=request_id, memory=self.memory, **extra)
