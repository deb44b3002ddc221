"""The instance's end of the LLM proxy, on its own: what an instance's ``ctx.llm`` can do."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from project_o.errors import LLMError
from project_o.llm.remote import RemoteClient
from project_o.runtime.llm_link import LLMLink
from project_o.wire import Message, MessageType


def test_an_instance_without_async_handlers_refuses_an_async_call_and_sends_nothing() -> None:
    sent: list[Any] = []
    link = LLMLink(lambda kind, data: sent.append(kind), lambda: None, lambda message: None)
    client = RemoteClient(link)
    with pytest.raises(LLMError, match="use ctx.llm.chat"):
        asyncio.run(client.complete_async([{"role": "user", "content": "hi"}]))
    assert sent == []


def test_a_sync_call_reads_until_its_own_answer_and_keeps_other_frames() -> None:
    sent: list[dict[str, Any]] = []
    kept: list[Message] = []
    incoming: list[Message] = []

    def send(kind: MessageType, data: dict[str, Any]) -> None:
        sent.append(data)
        call_id = data["id"]
        incoming.extend([
            Message(MessageType.LLM_RESULT, {"id": "someone-else", "completion": {}}),
            Message(MessageType.HEARTBEAT, {}),
            Message(MessageType.LLM_TOKEN, {"id": call_id, "text": "he"}),
            Message(MessageType.LLM_TOKEN, {"id": call_id, "text": "llo"}),
            Message(MessageType.LLM_RESULT, {"id": call_id, "completion": {
                "text": "hello", "usage": {"prompt_tokens": 3, "completion_tokens": 2,
                                           "total_tokens": 5}}}),
        ])

    link = LLMLink(send, lambda: incoming.pop(0) if incoming else None, kept.append)
    pieces: list[str] = []
    completion = RemoteClient(link).complete([{"role": "user", "content": "hi"}], stream=True,
                                             on_token=pieces.append)
    assert (completion.text, completion.usage.total_tokens, pieces) == ("hello", 5,
                                                                        ["he", "llo"])
    assert sent[0]["stream"] is True and sent[0]["messages"][0]["content"] == "hi"
    assert [m.type for m in kept] == [MessageType.HEARTBEAT]  # served after the handler
