"""Talking to an OpenAI-compatible model: configuration, client, ``ctx.llm``, durable history.

::

    LLMConfig (config)   where the model is; from the environment, handed to instances
      └─► LLMClient (client)   one completion over HTTP: retries, backoff, streaming
            └─► LLM (chat)      ``ctx.llm.chat``: tool rounds, journals each exchange
                  └─► LLMHistory (history)   the ``llm_history`` store the journal rebuilds

The layer sits below ``agent`` (which gives handlers ``ctx.llm``) and is
used directly by the supervisor (the configuration it hands over, the
client of the LLM rewrite operator). Names are resolved lazily so the
supervisor can import the configuration without the client's SDK.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from project_o.llm.chat import LLM, FunctionTool, LLMReply, LLMTool, ToolResult
    from project_o.llm.client import Completion, LLMClient, ToolCall, Usage
    from project_o.llm.config import LLMConfig
    from project_o.llm.history import LLMHistory

__all__ = ["LLM", "Completion", "FunctionTool", "LLMClient", "LLMConfig", "LLMHistory",
           "LLMReply", "LLMTool", "ToolCall", "ToolResult", "Usage"]

_HOMES = {
    "LLM": "chat", "FunctionTool": "chat", "LLMReply": "chat", "LLMTool": "chat",
    "ToolResult": "chat", "Completion": "client", "LLMClient": "client", "ToolCall": "client",
    "Usage": "client", "LLMConfig": "config", "LLMHistory": "history",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'project_o.llm' has no attribute {name!r}")
    return getattr(importlib.import_module(f"project_o.llm.{_HOMES[name]}"), name)
