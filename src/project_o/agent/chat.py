"""Chat requests (``POST /v1/chat/completions``) as an agent receives them.

::

    chat envelope (project_o.wire.chat) ─► Agent.handle
        ├─ @agent.chat declared:  chat(ctx, {"messages": [...], "model", ...}) -> reply
        └─ otherwise:             handler(ctx, default_input(messages)) -> reply
                                  (the text of the last user message)

A reply is a ``str``, or any value the gateway turns into text (a map's
``content``, ``answer`` or ``text``, else its JSON). To stream, a handler
emits pieces of the reply: ``ctx.emit("text")`` or ``ctx.emit({"token":
"text"})`` (what ``ctx.llm`` streaming emits); other events are not text.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["ChatHandler", "default_input", "message_text"]

#: ``chat(ctx, request) -> reply``; request = the OpenAI chat completion body
ChatHandler = Callable[[Any, dict[str, Any]], Any]


def message_text(message: Any) -> str:
    """The text of one chat message (a string, or the text parts of a list of parts)."""
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content
                       if isinstance(part, dict) and isinstance(part.get("text"), str))
    return ""


def default_input(messages: Sequence[Any]) -> str:
    """What a handler without a chat handler receives: the last user message's text."""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return message_text(message)
    return message_text(messages[-1]) if messages else ""
