"""The application layer: what agent authors write against.

``Agent`` (the DSL), ``Context`` (what a handler receives) and ``Memory``
(durable key-value memory, ``ctx.memory``). Later layers (tools, LLM,
workflow) grow here.
"""

from __future__ import annotations

from project_o.agent.context import Context
from project_o.agent.dsl import Agent, Handler, TestClient
from project_o.agent.kv import KVReplica, Memory

__all__ = ["Agent", "Context", "Handler", "KVReplica", "Memory", "TestClient"]
