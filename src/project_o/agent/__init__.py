"""The application layer: what agent authors write against.

``Agent`` (the DSL), ``Context`` (what a handler receives), ``Memory``
(durable memory, ``ctx.memory``), tools, params, workflows and the LLM
client. Names are resolved lazily so the supervisor can import a small
piece without the whole layer and numpy. The LLM pieces live in
:mod:`project_o.llm` (a lower layer); ``LLM``, ``LLMReply`` and ``LLMConfig``
stay importable from here.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from project_o.agent.context import Context
    from project_o.agent.dsl import Agent, Handler, TestClient
    from project_o.agent.memory import KVReplica, Memory
    from project_o.llm.chat import LLM, LLMReply
    from project_o.llm.config import LLMConfig

__all__ = ["LLM", "Agent", "Context", "Handler", "KVReplica", "LLMConfig", "LLMReply",
           "Memory", "TestClient"]

_HOMES = {
    "Agent": "project_o.agent.dsl", "Handler": "project_o.agent.dsl",
    "TestClient": "project_o.agent.dsl", "Context": "project_o.agent.context",
    "KVReplica": "project_o.agent.memory", "Memory": "project_o.agent.memory",
    "LLM": "project_o.llm.chat", "LLMReply": "project_o.llm.chat",
    "LLMConfig": "project_o.llm.config",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'project_o.agent' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOMES[name]), name)
    # Kept, so the next lookup is a plain attribute: an evaluator runs
    # `from project_o import Agent` once per candidate.
    globals()[name] = value
    return value
