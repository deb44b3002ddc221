"""POST /v1/chat/completions on the scripted service: what reaches the service, what is refused.

The service echoes its input, so a reply shows the envelope the agent would
receive; the end-to-end behaviour with the `openai` SDK and real agents is
in test_chat_e2e.py.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from project_o.gateway.chat import event_text, reply_text
from project_o.gateway.problems import APIError
from project_o.wire.chat import CHAT_KEY, chat_request, wrap_chat
from tests.gateway.conftest import ScriptedService

pytestmark = pytest.mark.anyio

HELLO = [{"role": "user", "content": "hello"}]


async def test_the_whole_request_travels_in_the_envelope(
    client: httpx.AsyncClient, service: ScriptedService,
) -> None:
    body = {"model": "m", "messages": HELLO, "temperature": 0.2, "tools": [{"x": 1}]}
    response = await client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    sent, _ = service.calls[-1]
    assert chat_request(sent) == {"model": "m", "messages": HELLO, "temperature": 0.2,
                                  "tools": [{"x": 1}], "stream": False, "n": 1}
    answer = response.json()
    assert answer["object"] == "chat.completion" and answer["model"] == "m"
    # the scripted service echoes the envelope: not text, so the content is its JSON
    assert json.loads(answer["choices"][0]["message"]["content"]) == sent


@pytest.mark.parametrize("body, field", [
    ({"model": "m", "messages": []}, "messages"),
    ({"messages": HELLO}, "model"),
    ({"model": "m", "messages": HELLO, "n": 2}, "n"),
    ({"model": "m", "messages": [{"role": "wizard", "content": "x"}]}, "messages.0.role"),
    ({"model": "m", "messages": HELLO, "seed": 2**70}, "seed"),
])
async def test_invalid_requests_are_refused_naming_the_field(
    client: httpx.AsyncClient, body: dict[str, Any], field: str,
) -> None:
    response = await client.post("/v1/chat/completions", json=body)
    assert response.status_code == 422, response.text
    assert field in [f["field"] for f in response.json()["error"]["fields"]]


async def test_a_token_is_needed(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.post("/v1/chat/completions", json={"model": "m", "messages": HELLO})
    assert response.status_code == 401


async def test_a_stream_is_server_sent_chunks_then_done(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/v1/chat/completions", json={
        "model": "m", "messages": HELLO, "stream": True})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [line[len("data: "):] for line in response.text.split("\n\n") if line]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}


def test_reply_text_reads_a_string_or_a_maps_text() -> None:
    assert reply_text("hi", "r") == "hi"
    assert reply_text({"answer": "a", "llm": False}, "r") == "a"
    assert reply_text({"content": "c", "answer": "a"}, "r") == "c"
    assert reply_text({"n": 1}, "r") == '{"n":1}'
    with pytest.raises(APIError) as refused:
        reply_text(b"\xff", "r")
    assert refused.value.status_code == 502


def test_event_text_takes_strings_and_tokens_only() -> None:
    assert event_text("a") == "a"
    assert event_text({"token": "t"}) == "t"
    assert event_text({"delta": "d"}) == "d"
    assert event_text({"progress": "thinking"}) is None
    assert event_text({"token": 3}) is None


def test_the_envelope_is_one_key_around_a_map() -> None:
    assert chat_request(wrap_chat({"messages": []})) == {"messages": []}
    assert chat_request({CHAT_KEY: {}, "other": 1}) is None
    assert chat_request({CHAT_KEY: "text"}) is None
    assert chat_request("hello") is None
