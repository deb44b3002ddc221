"""What an instance holds: the agent's durable stores, as one checkpoint payload.

Kept as a name for the runtime; the mechanism is
:class:`project_o.agent.store.StateBook`, built by
:class:`project_o.agent.kit.AgentKit`.
"""

from __future__ import annotations

from project_o.agent.store import StateBook

__all__ = ["InstanceState"]

InstanceState = StateBook
