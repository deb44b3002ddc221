"""@agent.chat and the default mapping, in-process (the agent's side of /v1/chat/completions)."""

from __future__ import annotations

from typing import Any

import pytest

from project_o import Agent
from project_o.agent.chat import default_input, message_text
from project_o.errors import InvalidArgument
from project_o.wire.chat import wrap_chat

MESSAGES = [{"role": "system", "content": "be kind"}, {"role": "user", "content": "one"},
            {"role": "assistant", "content": "ok"}, {"role": "user", "content": "two"}]


def _echo_agent() -> Agent:
    agent = Agent("echo")

    @agent.handler
    def handle(ctx: Any, request: Any) -> Any:
        return {"handled": request}

    return agent


def test_without_a_chat_handler_the_handler_gets_the_last_user_text() -> None:
    client = _echo_agent().test_client()
    assert client.call(wrap_chat({"model": "m", "messages": MESSAGES})) == {"handled": "two"}


def test_a_chat_handler_gets_the_whole_request_and_plain_requests_still_go_to_the_handler(
) -> None:
    agent = _echo_agent()

    @agent.chat
    def chat(ctx: Any, request: dict[str, Any]) -> str:
        ctx.memory.set("model", request["model"])
        return f"{len(request['messages'])} messages"

    client = agent.test_client()
    assert client.call(wrap_chat({"model": "m", "messages": MESSAGES})) == "4 messages"
    assert client.memory.get("model") == "m"
    assert client.call("plain") == {"handled": "plain"}


def test_one_chat_handler_per_agent() -> None:
    agent = _echo_agent()
    agent.chat(lambda ctx, request: "a")
    with pytest.raises(InvalidArgument, match="already has a chat handler"):
        agent.chat(lambda ctx, request: "b")
    with pytest.raises(InvalidArgument, match="needs a function"):
        agent.chat("not callable")  # type: ignore[type-var]


def test_message_text_joins_text_parts() -> None:
    parts = {"role": "user", "content": [{"type": "text", "text": "a"},
                                         {"type": "image_url", "image_url": {"url": "x"}},
                                         {"type": "text", "text": "b"}]}
    assert message_text(parts) == "ab"
    assert message_text({"role": "user", "content": None}) == ""
    assert default_input([{"role": "assistant", "content": "only"}]) == "only"
    assert default_input([]) == ""
