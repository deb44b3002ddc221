"""The chat envelope: how an OpenAI-style chat request travels as a request's input.

The gateway's ``POST /v1/chat/completions`` cannot know whether the agent
declared a chat handler (the supervisor never imports agent code), so it
always sends the same input, one key wrapping the chat request::

    input = {CHAT_KEY: {"messages": [{"role", "content", ...}, ...],
                        "model": str, "stream": bool, ...the client's other fields}}

and the agent's own process decides (:meth:`project_o.agent.dsl.Agent.handle`):
a declared ``@agent.chat`` handler receives the inner map; otherwise the
handler receives the text of the last user message (the default mapping).
"""

from __future__ import annotations

from typing import Any, Final

__all__ = ["CHAT_KEY", "chat_request", "wrap_chat"]

#: the one key of a chat envelope (a name no ordinary input is likely to use alone)
CHAT_KEY: Final = "project_o.chat"


def wrap_chat(request: dict[str, Any]) -> dict[str, Any]:
    """The input that carries ``request`` (an OpenAI chat completion body)."""
    return {CHAT_KEY: request}


def chat_request(value: Any) -> dict[str, Any] | None:
    """The chat request ``value`` carries, or None if it is not an envelope."""
    if isinstance(value, dict) and len(value) == 1:
        inner = value.get(CHAT_KEY)
        if isinstance(inner, dict):
            return inner
    return None
