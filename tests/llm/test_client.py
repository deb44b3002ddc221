"""LLMClient against a real local OpenAI-compatible server: replies, streams, failures."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from project_o.errors import LLMError, ProjectOError
from project_o.llm.client import LLMClient, Usage
from project_o.llm.config import LLMConfig
from tests.agent.openai_server import BrokenStream, Delay, OpenAIServer, Raw, Reply, Status

KEY = "sk-test-very-secret-0123456789"
USER = [{"role": "user", "content": "hi"}]


@pytest.fixture
def server() -> Iterator[OpenAIServer]:
    with OpenAIServer() as running:
        yield running


class Waits(list[float]):
    """A ``sleep`` that records the backoff instead of waiting it out."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def client_for(server: OpenAIServer, waits: Waits | None = None, **settings: object) -> LLMClient:
    config = LLMConfig(model="test-model", base_url=server.base_url, api_key=KEY,
                       **settings)  # type: ignore[arg-type]
    return LLMClient(config, rng=random.Random(7), sleep=waits if waits is not None else Waits())


def test_plain_reply_carries_text_usage_model_and_the_request(server: OpenAIServer) -> None:
    server.script(Reply("Paris.", usage=(12, 3), model="served-model"))
    completion = client_for(server).complete(USER, options={"temperature": 0})
    assert completion.text == "Paris."
    assert completion.usage == Usage(12, 3, 15)
    assert completion.model == "served-model"
    assert completion.finish_reason == "stop"
    assert completion.tool_calls == ()
    sent = server.requests[0]
    assert sent["model"] == "test-model" and sent["messages"] == USER
    assert sent["temperature"] == 0 and "stream" not in sent
    assert server.headers[0]["authorization"] == f"Bearer {KEY}"  # the key reaches the server


def test_stream_delivers_tokens_in_order_and_folds_them_into_one_reply(
        server: OpenAIServer) -> None:
    pieces = ["The ", "answer ", "is ", "42", "."]
    server.script(Reply("".join(pieces), chunks=pieces, usage=(20, 5)))
    seen: list[str] = []
    completion = client_for(server).complete(USER, stream=True, on_token=seen.append)
    assert seen == pieces
    assert completion.text == "The answer is 42."
    assert completion.usage == Usage(20, 5, 25)  # include_usage was asked for
    assert server.requests[0]["stream"] is True
    assert server.requests[0]["stream_options"] == {"include_usage": True}


def test_streamed_tool_call_fragments_are_joined(server: OpenAIServer) -> None:
    server.script(Reply(None, tool_calls=[{"name": "add", "arguments": {"a": 2, "b": 40}}]))
    completion = client_for(server).complete(USER, stream=True)
    assert [(c.name, c.arguments) for c in completion.tool_calls] == [
        ("add", '{"a": 2, "b": 40}')]
    assert completion.finish_reason == "tool_calls"


def test_a_500_then_success_succeeds_after_one_backoff(server: OpenAIServer) -> None:
    server.script(Status(500), Reply("recovered"))
    waits = Waits()
    completion = client_for(server, waits, max_retries=2, backoff_base=0.5).complete(USER)
    assert completion.text == "recovered"
    assert len(server.requests) == 2
    assert len(waits) == 1 and 0.25 <= waits[0] <= 0.5  # equal jitter on the first retry


def test_persistent_500_raises_llm_error_after_all_attempts(server: OpenAIServer) -> None:
    server.script(*[Status(503, "overloaded")] * 3)
    waits = Waits()
    with pytest.raises(LLMError) as caught:
        client_for(server, waits, max_retries=2, backoff_base=1.0, backoff_max=1.5).complete(USER)
    error = caught.value
    assert isinstance(error, ProjectOError)
    assert error.status == 503 and error.attempts == 3
    assert "HTTP 503" in str(error) and "overloaded" in str(error) and "3 attempt" in str(error)
    assert len(server.requests) == 3
    # Exponential with a cap: retry 1 in [0.5, 1.0], retry 2 in [0.75, 1.5] (capped from 2.0).
    assert len(waits) == 2 and 0.5 <= waits[0] <= 1.0 and 0.75 <= waits[1] <= 1.5


def test_retry_after_header_raises_the_wait_up_to_the_cap(server: OpenAIServer) -> None:
    client = client_for(server, backoff_base=0.1, backoff_max=4.0)
    assert client.backoff(1, retry_after=3.0) == 3.0
    assert client.backoff(1, retry_after=60.0) == 4.0
    assert client.backoff(1) <= 0.1


def test_a_client_error_is_not_retried_and_says_what_to_check(server: OpenAIServer) -> None:
    server.script(Status(404, "model not found"), Reply("never sent"))
    with pytest.raises(LLMError) as caught:
        client_for(server).complete(USER)
    assert caught.value.status == 404 and caught.value.attempts == 1
    assert "PROJECT_O_LLM_MODEL" in str(caught.value)
    assert len(server.requests) == 1 and server.pending == 1


def test_timeout_raises_llm_error_after_retries(server: OpenAIServer) -> None:
    server.script(Delay(5.0), Delay(5.0))
    waits = Waits()
    with pytest.raises(LLMError) as caught:
        client_for(server, waits, timeout=0.2, max_retries=1).complete(USER)
    assert "no answer within 0.2 s" in str(caught.value)
    assert caught.value.attempts == 2 and caught.value.status is None
    assert len(server.requests) == 2 and len(waits) == 1


@pytest.mark.parametrize("body", [
    Raw(b"{this is not json"),
    Raw(b'{"id": "x", "object": "chat.completion"}'),       # no choices
    Raw(b'{"choices": [{"index": 0}]}'),                     # a choice without a message
    Raw(b'{"choices": "lots"}'),
    Raw(b'{"choices": [{"message": {"content": 7}}]}'),      # content that is not text
    Raw(b"<html>bad gateway</html>", content_type="text/html"),
], ids=["not-json", "no-choices", "no-message", "choices-not-list", "content-int", "html"])
def test_a_malformed_reply_is_an_llm_error_and_not_retried(
        server: OpenAIServer, body: Raw) -> None:
    server.script(body, Reply("never sent"))
    with pytest.raises(LLMError, match="malformed") as caught:
        client_for(server).complete(USER)
    assert caught.value.attempts == 1
    assert len(server.requests) == 1


def test_a_malformed_stream_chunk_is_an_llm_error(server: OpenAIServer) -> None:
    server.script(Raw(b"data: {broken\n\n", content_type="text/event-stream"))
    with pytest.raises(LLMError, match="malformed"):
        client_for(server).complete(USER, stream=True)


def test_a_stream_cut_before_any_token_is_retried(server: OpenAIServer) -> None:
    server.script(BrokenStream([]), Reply("whole"))
    seen: list[str] = []
    completion = client_for(server).complete(USER, stream=True, on_token=seen.append)
    assert completion.text == "whole" and "".join(seen) == "whole"
    assert len(server.requests) == 2


def test_a_stream_cut_after_tokens_is_not_retried(server: OpenAIServer) -> None:
    server.script(BrokenStream(["Hal", "f "]), Reply("never sent"))
    seen: list[str] = []
    with pytest.raises(LLMError, match="not retried"):
        client_for(server).complete(USER, stream=True, on_token=seen.append)
    assert seen == ["Hal", "f "]  # shown once, never twice
    assert len(server.requests) == 1


def test_an_error_in_the_token_callback_is_the_callers_not_an_llm_error(
        server: OpenAIServer) -> None:
    server.script(Reply("a b"))

    def fussy(token: str) -> None:
        raise ValueError("the screen is gone")

    with pytest.raises(ValueError, match="the screen is gone"):
        client_for(server).complete(USER, stream=True, on_token=fussy)


def test_the_api_key_never_appears_in_an_error(server: OpenAIServer) -> None:
    server.script(Status(401, f"Incorrect API key provided: {KEY}"))
    with pytest.raises(LLMError) as caught:
        client_for(server).complete(USER)
    assert KEY not in str(caught.value) and "***" in str(caught.value)
    assert "PROJECT_O_LLM_API_KEY" in str(caught.value)


def test_an_unreachable_server_is_an_llm_error_after_retries() -> None:
    with OpenAIServer() as gone:
        base_url = gone.base_url
    waits = Waits()
    config = LLMConfig(model="m", base_url=base_url, max_retries=1)
    with pytest.raises(LLMError, match="connection failed") as caught:
        LLMClient(config, rng=random.Random(1), sleep=waits).complete(USER)
    assert caught.value.attempts == 2 and len(waits) == 1
