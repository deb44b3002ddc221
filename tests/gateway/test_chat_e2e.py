"""POST /v1/chat/completions against a real supervisor, with the official `openai` SDK as the client.

Two agents, each in its own supervisor: one declares ``@agent.chat`` and
streams its reply word by word (``ctx.emit({"token": ...})``); the other
has only a handler and gets the last user message (the default mapping).
The SDK is pointed at the gateway with the API token as its key, as a user
would point it at OpenAI.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.supervisor.harness import FAST_HEARTBEAT, TOKEN, Stack

openai = pytest.importorskip("openai")

CHAT_AGENT = """
from project_o import Agent

agent = Agent("chatty")


@agent.handler
def handle(ctx, request):
    return {"answer": f"plain: {request}"}


@agent.chat
def chat(ctx, request):
    last = [m for m in request["messages"] if m["role"] == "user"][-1]["content"]
    if last == "fail":
        raise ValueError("asked to fail")
    if last == "fail late":
        ctx.emit({"token": "about to "})
        raise ValueError("failed after streaming")
    words = [word + " " for word in last.split()]
    for word in words:
        ctx.emit({"token": word})
    ctx.emit({"progress": "not text"})
    ctx.memory.set("last_chat", last)
    return "".join(words) + f"[{request['model']}, {len(request['messages'])} messages, " \\
        f"temperature {request.get('temperature')}]"
"""

PLAIN_AGENT = """
from project_o import Agent

agent = Agent("plain")


@agent.handler
def handle(ctx, request):
    return {"answer": f"you said: {request}", "seen": request}
"""


def _stack(root: Path, name: str, source: str) -> Stack:
    path = root / f"{name}.py"
    path.write_text(source)
    return Stack(root / f"vault-{name}", ["--agent", str(path), *FAST_HEARTBEAT])


@pytest.fixture(scope="module")
def chatty(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = _stack(tmp_path_factory.mktemp("chat"), "chatty", CHAT_AGENT)
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = _stack(tmp_path_factory.mktemp("chat"), "plain", PLAIN_AGENT)
    yield stack
    stack.stop()


def _client(stack: Stack, key: str = TOKEN) -> openai.OpenAI:
    assert stack.http is not None
    return openai.OpenAI(base_url=f"http://127.0.0.1:{stack.http.base_url.port}/v1", api_key=key,
                         max_retries=0,
                         timeout=60.0)


def test_a_chat_handler_answers_the_sdk(chatty: Stack) -> None:
    completion = _client(chatty).chat.completions.create(
        model="my-model", temperature=0.5,
        messages=[{"role": "system", "content": "be brief"},
                  {"role": "user", "content": "hello there"}])
    (choice,) = completion.choices
    assert choice.message.role == "assistant"
    assert choice.message.content == "hello there [my-model, 2 messages, temperature 0.5]"
    assert choice.finish_reason == "stop"
    assert completion.model == "my-model"
    assert completion.id.startswith("chatcmpl-")
    assert completion.system_fingerprint == chatty.status()["version"]


def test_a_stream_arrives_piece_by_piece(chatty: Stack) -> None:
    stream = _client(chatty).chat.completions.create(
        model="m", stream=True, messages=[{"role": "user", "content": "one two three"}])
    chunks = list(stream)
    pieces = [c.choices[0].delta.content for c in chunks if c.choices[0].delta.content]
    # each emitted word is its own chunk; the reply's tail (not emitted) comes last
    assert pieces[:3] == ["one ", "two ", "three "]
    assert "".join(pieces) == "one two three [m, 1 messages, temperature None]"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.id == chunks[0].id for c in chunks)


def test_the_chat_handler_writes_memory_through_the_wal(chatty: Stack) -> None:
    before = chatty.status()["vault"]["last_sequence"]
    _client(chatty).chat.completions.create(
        model="m", messages=[{"role": "user", "content": "remember me"}])
    vault = chatty.status()["vault"]
    assert vault["last_sequence"] == before + 1  # the handler's one ctx.memory.set
    assert vault["durable_sequence"] >= vault["last_sequence"]


def test_without_a_chat_handler_the_handler_gets_the_last_user_message(plain: Stack) -> None:
    client = _client(plain)
    completion = client.chat.completions.create(
        model="anything", messages=[{"role": "user", "content": "first"},
                                    {"role": "assistant", "content": "ok"},
                                    {"role": "user", "content": [
                                        {"type": "text", "text": "second, "},
                                        {"type": "text", "text": "in parts"}]}])
    assert completion.choices[0].message.content == "you said: second, in parts"
    stream = client.chat.completions.create(
        model="anything", stream=True, messages=[{"role": "user", "content": "streamed"}])
    assert "".join(c.choices[0].delta.content or "" for c in stream) == "you said: streamed"


def test_the_token_is_the_api_key(chatty: Stack) -> None:
    with pytest.raises(openai.AuthenticationError):
        _client(chatty, key="not-the-token").chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}])


def test_a_handler_that_raises_is_an_api_error(chatty: Stack) -> None:
    client = _client(chatty)
    with pytest.raises(openai.APIStatusError) as refused:
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "fail"}])
    assert refused.value.status_code == 502
    assert "asked to fail" in str(refused.value)
    # before the first piece of a stream: the same 502, not a broken stream
    with pytest.raises(openai.APIStatusError) as streamed:
        list(client.chat.completions.create(
            model="m", stream=True, messages=[{"role": "user", "content": "fail"}]))
    assert streamed.value.status_code == 502
    # after a piece was streamed: an error event, which the SDK raises
    stream = client.chat.completions.create(
        model="m", stream=True, messages=[{"role": "user", "content": "fail late"}])
    seen = []
    with pytest.raises(openai.APIError, match="failed after streaming"):
        for chunk in stream:
            seen.append(chunk.choices[0].delta.content)
    assert "about to " in seen


def test_models_lists_the_agent(chatty: Stack) -> None:
    (model,) = _client(chatty).models.list().data
    assert model.id == "project-o"
