"""Durable LLM conversation history and token usage: the ``llm_history`` store.

Each finished chat is one journaled *exchange*: the messages it added to
its conversation (the caller's, the model's, the tools' results), the
model, the token usage. Replaying the journal rebuilds the same history::

    ctx.llm.chat(...) ─► journal("llm_exchange", {conversation, messages, model,
                         │                        usage, finish_reason, request_id, at})
                         └─► LLMHistory.apply(...)    appends, then compacts

    checkpoint payload["llm_history"]["chat"] = {
        "conversations": {name: [exchange, ...]},   oldest first
        "usage": {"calls", "failures", "prompt_tokens", "completion_tokens", "total_tokens"},
    }

Operations: ``llm_exchange`` (above; ``conversation`` None keeps no
messages, only usage), ``llm_usage {model, usage, error}`` (a chat that
failed after spending tokens) and ``llm_forget {conversation}``.

Compaction, applied after every exchange, so replay compacts identically:

* a conversation keeps whole exchanges, oldest dropped first, until it
  holds at most ``max_messages`` messages; an exchange is never split (a
  tool result without the assistant message that asked for it would be
  rejected by the API), so the newest exchange stays even when it alone
  is longer;
* at most ``max_conversations`` conversations are kept; the one updated
  least recently is dropped first.

Usage totals are never compacted. The API key is never part of any of
this: the client holds it, the history only holds messages.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from project_o.errors import InvalidArgument

__all__ = [
    "DEFAULT_MAX_CONVERSATIONS",
    "DEFAULT_MAX_MESSAGES",
    "LLM_EXCHANGE",
    "LLM_FORGET",
    "LLM_HISTORY_OPERATIONS",
    "LLM_USAGE",
    "USAGE_FIELDS",
    "LLMHistory",
]

LLM_EXCHANGE: Final = "llm_exchange"
LLM_USAGE: Final = "llm_usage"
LLM_FORGET: Final = "llm_forget"
LLM_HISTORY_OPERATIONS: Final = frozenset({LLM_EXCHANGE, LLM_USAGE, LLM_FORGET})

#: about what a 16k-token context holds at ~150 tokens a message; older
#: turns belong in semantic memory (recall), not in every prompt
DEFAULT_MAX_MESSAGES: Final = 100
#: conversations kept at once (one per user or topic is the usual use)
DEFAULT_MAX_CONVERSATIONS: Final = 256
#: the token counts an OpenAI-compatible ``usage`` object carries
USAGE_FIELDS: Final = ("prompt_tokens", "completion_tokens", "total_tokens")


def _empty_totals() -> dict[str, int]:
    return {"calls": 0, "failures": 0, **dict.fromkeys(USAGE_FIELDS, 0)}


class LLMHistory:
    """The conversations and usage totals; a :class:`~project_o.agent.store.Store`."""

    name: Final = "chat"
    section: Final = "llm_history"
    operations: Final = LLM_HISTORY_OPERATIONS

    def __init__(
        self,
        *,
        max_messages: int = DEFAULT_MAX_MESSAGES,
        max_conversations: int = DEFAULT_MAX_CONVERSATIONS,
    ) -> None:
        for label, value in (("max_messages", max_messages),
                             ("max_conversations", max_conversations)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidArgument(f"{label} must be an int >= 1, got {value!r}")
        self.max_messages = max_messages
        self.max_conversations = max_conversations
        self._conversations: dict[str, list[dict[str, Any]]] = {}
        self._totals = _empty_totals()

    # -- reads --------------------------------------------------------------

    def messages(self, conversation: str) -> list[dict[str, Any]]:
        """The kept messages of ``conversation``, oldest first (copies)."""
        exchanges = self._conversations.get(conversation, [])
        return [dict(message) for exchange in exchanges for message in exchange["messages"]]

    def exchanges(self, conversation: str) -> list[dict[str, Any]]:
        """The kept exchanges of ``conversation``, oldest first."""
        return [dict(exchange) for exchange in self._conversations.get(conversation, [])]

    def conversations(self) -> list[str]:
        """Conversation names, least recently updated first."""
        return list(self._conversations)

    @property
    def usage(self) -> dict[str, int]:
        """Cumulative ``calls``, ``failures`` and token counts (never compacted)."""
        return dict(self._totals)

    # -- the Store protocol -------------------------------------------------

    def apply(self, operation: str, data: Mapping[str, Any]) -> None:
        """Apply one journaled operation (see the module docstring)."""
        if not isinstance(data, Mapping):
            raise InvalidArgument(f"{operation} data must be a map, got {type(data).__name__}")
        if operation == LLM_EXCHANGE:
            self._apply_exchange(data)
        elif operation == LLM_USAGE:
            self._add_usage(data.get("usage"), failed=True)
        elif operation == LLM_FORGET:
            self._conversations.pop(_conversation(data.get("conversation")), None)
        else:
            raise InvalidArgument(f"{operation!r} is not an llm history operation; expected "
                                  f"one of {sorted(LLM_HISTORY_OPERATIONS)}")

    def snapshot(self) -> dict[str, Any]:
        """Conversations and totals as plain values (msgpack-able)."""
        return {"conversations": {name: [dict(e) for e in exchanges]
                                  for name, exchanges in self._conversations.items()},
                "usage": dict(self._totals)}

    def load(self, snapshot: Any) -> None:
        """Replace the history with ``snapshot`` (as :meth:`snapshot` returned it)."""
        if not isinstance(snapshot, Mapping):
            raise InvalidArgument(
                f"an llm history snapshot must be a map, got {type(snapshot).__name__}")
        conversations = snapshot.get("conversations") or {}
        self._conversations = {
            _conversation(name): [_exchange(e) for e in exchanges]
            for name, exchanges in conversations.items()
        }
        self._totals = _empty_totals()
        usage = snapshot.get("usage") or {}
        for key in self._totals:
            self._totals[key] = _count(usage.get(key, 0))

    # -- internals ----------------------------------------------------------

    def _apply_exchange(self, data: Mapping[str, Any]) -> None:
        exchange = _exchange(data)
        name = data.get("conversation")
        name = None if name is None else _conversation(name)  # checked before any change
        self._add_usage(exchange["usage"], failed=False)
        if name is None:
            return  # a one-off chat: usage counted, nothing to remember
        # Re-insert so dict order is "least recently updated first".
        exchanges = self._conversations.pop(name, [])
        exchanges.append(exchange)
        self._conversations[name] = exchanges
        self._compact(exchanges)
        while len(self._conversations) > self.max_conversations:
            del self._conversations[next(iter(self._conversations))]

    def _compact(self, exchanges: list[dict[str, Any]]) -> None:
        total = sum(len(e["messages"]) for e in exchanges)
        while len(exchanges) > 1 and total > self.max_messages:
            total -= len(exchanges.pop(0)["messages"])

    def _add_usage(self, usage: Any, *, failed: bool) -> None:
        self._totals["failures" if failed else "calls"] += 1
        usage = usage if isinstance(usage, Mapping) else {}
        for key in USAGE_FIELDS:
            self._totals[key] += _count(usage.get(key, 0))


def _exchange(data: Mapping[str, Any]) -> dict[str, Any]:
    messages = data.get("messages")
    if not isinstance(messages, list) or not all(isinstance(m, Mapping) for m in messages):
        raise InvalidArgument(f"an llm exchange needs 'messages', a list of maps; got "
                              f"{type(messages).__name__}")
    usage = data.get("usage")
    usage = usage if isinstance(usage, Mapping) else {}
    return {
        "messages": [dict(m) for m in messages],
        "model": data.get("model"),
        "usage": {key: _count(usage.get(key, 0)) for key in USAGE_FIELDS},
        "finish_reason": data.get("finish_reason"),
        "request_id": data.get("request_id"),
        "at": data.get("at"),
    }


def _conversation(name: object) -> str:
    if not isinstance(name, str) or not name:
        raise InvalidArgument(f"a conversation name must be a non-empty str, got {name!r}")
    return name


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0
