"""Completions made by someone else: the client agent code gets, and the wire format.

Agent code never holds the model's key or address. Its ``ctx.llm`` asks
the supervisor, which calls the model with its own client
(``supervisor/llm_proxy.py``)::

    instance                                           supervisor
    RemoteClient.complete(messages, tools, stream)
      └─ transport ── llm_call {id, messages, tools, stream, options} ──► LLMClient.complete
                   ◄─ llm_token {id, text}         (each streamed piece, in order)
                   ◄─ llm_result {id, completion} | {id, error}
      Completion  or  LLMError (the supervisor's message, status, attempts)

The tool loop stays with the agent (tools are agent code); one
``llm_call`` is one completion. This module holds what both ends agree
on -- :func:`call_data`, :func:`completion_data` and their readers, which
treat what arrives as untrusted -- and :class:`RemoteClient`, an
:class:`~project_o.llm.client.LLMClient` look-alike over a
:class:`Transport` the runtime provides (a sync and an async form, so
both kinds of handler can use it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final, Protocol

from project_o.errors import LLMError
from project_o.llm.client import Completion, TokenCallback, ToolCall, Usage

__all__ = [
    "MAX_ERROR_CHARS",
    "RemoteClient",
    "Transport",
    "call_data",
    "completion_data",
    "completion_from_data",
    "error_data",
    "error_from_data",
]

#: an error message longer than this is cut (it is shown to agent code and logged)
MAX_ERROR_CHARS: Final = 2000


class Transport(Protocol):
    """Carries one ``llm_call`` to the supervisor and brings back its ``llm_result`` data.

    ``on_token`` receives each ``llm_token`` piece, in order, before the
    call returns (None: the caller does not stream).
    """

    def call(self, request: dict[str, Any], on_token: TokenCallback | None) -> dict[str, Any]: ...

    async def call_async(
        self, request: dict[str, Any], on_token: TokenCallback | None,
    ) -> dict[str, Any]: ...


class RemoteClient:
    """Completions through a :class:`Transport`: what ``ctx.llm`` uses inside an instance."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    def complete(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
        stream: bool = False,
        on_token: TokenCallback | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> Completion:
        """One completion, made by the supervisor; raises LLMError as LLMClient does."""
        request = call_data(messages, tools, stream, options)
        return _outcome(self._transport.call(request, on_token if stream else None))

    async def complete_async(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
        stream: bool = False,
        on_token: TokenCallback | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> Completion:
        """:meth:`complete` for ``async`` handlers: other calls run while this one waits."""
        request = call_data(messages, tools, stream, options)
        return _outcome(await self._transport.call_async(request, on_token if stream else None))


def call_data(
    messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]] | None,
    stream: bool, options: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The fields of an ``llm_call`` frame (its ``id`` aside)."""
    return {"messages": [dict(m) for m in messages],
            "tools": [dict(t) for t in tools] if tools else None,
            "stream": bool(stream), "options": dict(options or {})}


def completion_data(completion: Completion) -> dict[str, Any]:
    """``completion`` as an ``llm_result`` carries it."""
    return {"text": completion.text,
            "tool_calls": [{"id": c.id, "name": c.name, "arguments": c.arguments}
                           for c in completion.tool_calls],
            "usage": completion.usage.to_dict(), "model": completion.model,
            "finish_reason": completion.finish_reason}


def completion_from_data(data: Any) -> Completion:
    """The Completion an ``llm_result`` describes; LLMError if it is malformed."""
    if not isinstance(data, Mapping):
        raise LLMError(f"the supervisor's llm_result holds {type(data).__name__}, not a map")
    calls = data.get("tool_calls") or []
    usage = data.get("usage") or {}
    if not isinstance(calls, list) or not isinstance(usage, Mapping):
        raise LLMError("the supervisor's llm_result has malformed tool_calls or usage")
    return Completion(
        text=_text(data.get("text")),
        tool_calls=tuple(_tool_call(call) for call in calls),
        usage=Usage(*(_count(usage.get(k)) for k in
                      ("prompt_tokens", "completion_tokens", "total_tokens"))),
        model=_text(data.get("model")),
        finish_reason=data.get("finish_reason") if isinstance(
            data.get("finish_reason"), str) else None,
    )


def error_data(error: LLMError) -> dict[str, Any]:
    """``error`` as an ``llm_result`` carries it: its message, status and attempts."""
    return {"message": str(error)[:MAX_ERROR_CHARS], "status": error.status,
            "attempts": error.attempts}


def error_from_data(data: Any) -> LLMError:
    """The LLMError an ``llm_result``'s ``error`` describes."""
    data = data if isinstance(data, Mapping) else {}
    status, attempts = data.get("status"), data.get("attempts")
    return LLMError(_text(data.get("message")) or "the LLM call failed",
                    status=status if isinstance(status, int) else None,
                    attempts=attempts if isinstance(attempts, int) else 1)


def _outcome(result: Mapping[str, Any]) -> Completion:
    if "error" in result:
        raise error_from_data(result["error"])
    return completion_from_data(result.get("completion"))


def _tool_call(call: Any) -> ToolCall:
    if not isinstance(call, Mapping) or not _text(call.get("name")):
        raise LLMError("the supervisor's llm_result has a tool call without a name")
    return ToolCall(id=_text(call.get("id")), name=_text(call["name"]),
                    arguments=_text(call.get("arguments")))


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0
