"""The application layer: what agent authors write against.

``Agent`` (the DSL), ``Context`` (what a handler receives), ``Memory``
(durable memory, ``ctx.memory``), tools, params, workflows and the LLM
client. Names are resolved lazily so the supervisor can import a small
piece (``project_o.agent.llm_config``) without the whole layer and numpy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from project_o.agent.context import Context
    from project_o.agent.dsl import Agent, Handler, TestClient
    from project_o.agent.kv import KVReplica, Memory
    from project_o.agent.llm import LLM, LLMReply
    from project_o.agent.llm_config import LLMConfig

__all__ = ["LLM", "Agent", "Context", "Handler", "KVReplica", "LLMConfig", "LLMReply",
           "Memory", "TestClient"]

_HOMES = {
    "Agent": "project_o.agent.dsl", "Handler": "project_o.agent.dsl",
    "TestClient": "project_o.agent.dsl", "Context": "project_o.agent.context",
    "KVReplica": "project_o.agent.kv", "Memory": "project_o.agent.kv",
    "LLM": "project_o.agent.llm", "LLMReply": "project_o.agent.llm",
    "LLMConfig": "project_o.agent.llm_config",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'project_o.agent' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)
