"""ctx.llm through an agent's test client, against a real local OpenAI-compatible server."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import msgpack
import pydantic
import pytest

from project_o import Agent
from project_o.agent.dsl import TestClient
from project_o.agent.kit import AgentKit
from project_o.errors import InvalidArgument, LLMError
from project_o.llm.chat import LLM, FunctionTool, LLMConfig
from project_o.llm.client import LLMClient, Usage
from tests.agent.openai_server import Delay, OpenAIServer, Reply, Status

KEY = "sk-chat-secret-abcdef123456"


@pytest.fixture
def server() -> Iterator[OpenAIServer]:
    with OpenAIServer() as running:
        yield running


def config_for(server: OpenAIServer, **settings: Any) -> LLMConfig:
    settings = {"max_retries": 1, "backoff_base": 0.01, "timeout": 5.0, **settings}
    return LLMConfig(model="test-model", base_url=server.base_url, api_key=KEY, **settings)


class AddArguments(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", strict=True)
    a: int
    b: int


class Adder:
    """An LLMTool that validates its arguments with pydantic, as the DSL's tools do."""

    name = "add"
    description = "Add two integers."
    parameters = AddArguments.model_json_schema()

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def call(self, arguments: dict[str, Any]) -> Any:
        checked = AddArguments.model_validate(arguments)
        self.calls.append(checked.model_dump())
        return {"sum": checked.a + checked.b}


def make_agent(adder: Adder | None = None) -> Agent:
    agent = Agent("llm-user")

    @agent.handler
    def handle(ctx: Any, request: dict[str, Any]) -> dict[str, Any]:
        if ctx.llm is None:
            return {"answer": "No LLM is configured; answering from memory only."}
        tokens: list[str] = []
        reply = ctx.llm.chat(request["q"], system=request.get("system"),
                             tools=[adder] if adder else False,
                             stream=request.get("stream", False), on_token=tokens.append)
        return {"answer": reply.text, "tokens": tokens, "usage": reply.usage.to_dict(),
                "steps": reply.steps}

    return agent


def client_with_llm(agent: Agent, config: LLMConfig) -> TestClient:
    client = agent.test_client()
    client.kit.use_llm(config)
    return client


def exchanges(client: TestClient) -> list[dict[str, Any]]:
    return [data for operation, data in client.journal if operation == "llm_exchange"]


def test_plain_chat_answers_and_journals_the_exchange(server: OpenAIServer) -> None:
    server.script(Reply("Hello there.", usage=(9, 3)))
    client = client_with_llm(make_agent(), config_for(server))
    out = client.call({"q": "hi", "system": "You are terse."})
    assert out["answer"] == "Hello there." and out["tokens"] == []
    assert server.requests[0]["messages"] == [
        {"role": "system", "content": "You are terse."}, {"role": "user", "content": "hi"}]
    [entry] = exchanges(client)
    assert entry["messages"] == [{"role": "user", "content": "hi"},
                                 {"role": "assistant", "content": "Hello there."}]
    assert entry["usage"] == {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}
    assert entry["model"] == "test-model" and entry["request_id"] == "test-1"
    assert entry["conversation"] == "default"
    assert client.kit.llm is not None and client.kit.llm.usage["total_tokens"] == 12


def test_streaming_through_the_handler_calls_back_per_token_in_order(
        server: OpenAIServer) -> None:
    pieces = ["Once ", "upon ", "a ", "time."]
    server.script(Reply("".join(pieces), chunks=pieces))
    client = client_with_llm(make_agent(), config_for(server))
    out = client.call({"q": "story", "stream": True})
    assert out["tokens"] == pieces and out["answer"] == "Once upon a time."
    assert exchanges(client)[0]["messages"][-1]["content"] == "Once upon a time."


def test_the_conversation_continues_and_the_system_prompt_is_never_stored(
        server: OpenAIServer) -> None:
    server.script(Reply("Noted, Ada."), Reply("You are Ada."))
    client = client_with_llm(make_agent(), config_for(server))
    client.call({"q": "I am Ada.", "system": "block: persona"})
    client.call({"q": "Who am I?", "system": "block: persona v2"})
    assert server.requests[1]["messages"] == [
        {"role": "system", "content": "block: persona v2"},
        {"role": "user", "content": "I am Ada."},
        {"role": "assistant", "content": "Noted, Ada."},
        {"role": "user", "content": "Who am I?"},
    ]
    stored = json.dumps([e["messages"] for e in exchanges(client)])
    assert "block: persona" not in stored


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_tool_calls_run_validated_and_results_are_fed_back(
        server: OpenAIServer, stream: bool) -> None:
    adder = Adder()
    server.script(
        Reply(None, tool_calls=[{"id": "c1", "name": "add", "arguments": {"a": 2, "b": "x"}}],
              usage=(30, 8)),
        Reply(None, tool_calls=[{"id": "c2", "name": "add", "arguments": {"a": 2, "b": 40}}],
              usage=(40, 8)),
        Reply("2 + 40 = 42", usage=(50, 6)),
    )
    client = client_with_llm(make_agent(adder), config_for(server))
    out = client.call({"q": "what is 2 + 40?", "stream": stream})

    assert out["answer"] == "2 + 40 = 42" and out["steps"] == 3
    assert adder.calls == [{"a": 2, "b": 40}]  # the invalid call never reached the tool body
    assert out["usage"] == {"prompt_tokens": 120, "completion_tokens": 22, "total_tokens": 142}
    offered = server.requests[0]["tools"][0]
    assert offered["type"] == "function" and offered["function"]["name"] == "add"
    assert offered["function"]["parameters"]["required"] == ["a", "b"]
    first_result = server.requests[1]["messages"][-1]
    assert first_result["role"] == "tool" and first_result["tool_call_id"] == "c1"
    assert json.loads(first_result["content"])["error"]["type"] == "ValidationError"
    second_result = server.requests[2]["messages"][-1]
    assert second_result == {"role": "tool", "tool_call_id": "c2", "content": '{"sum": 42}'}
    roles = [m["role"] for m in exchanges(client)[0]["messages"]]
    assert roles == ["user", "assistant", "tool", "assistant", "tool", "assistant"]


def test_unknown_tools_and_bad_json_arguments_are_told_to_the_model(
        server: OpenAIServer) -> None:
    adder = Adder()
    server.script(
        Reply(None, tool_calls=[{"id": "u", "name": "subtract", "arguments": {}},
                                {"id": "j", "name": "add", "arguments": "{a: 1"}]),
        Reply("I could not compute it."),
    )
    llm = client_with_llm(make_agent(), config_for(server)).kit.llm
    assert llm is not None
    reply = llm.chat("1 - 1?", tools=[adder])
    errors = {r.call.id: json.loads(r.content)["error"]["type"] for r in reply.tool_results}
    assert errors == {"u": "UnknownTool", "j": "InvalidArguments"}
    assert all(r.error for r in reply.tool_results) and adder.calls == []
    assert reply.text == "I could not compute it."


def test_tools_true_uses_the_agents_own_tools(server: OpenAIServer) -> None:
    adder = Adder()
    server.script(Reply(None, tool_calls=[{"name": "add", "arguments": {"a": 1, "b": 1}}]),
                  Reply("2"))
    kit = AgentKit(make_agent(), lambda operation, data: None)
    llm = LLM(config_for(server), kit.llm_history, kit.journal, tools=lambda: [adder])
    assert llm.chat("1+1", tools=True).text == "2"
    assert adder.calls == [{"a": 1, "b": 1}]
    assert [t["function"]["name"] for t in server.requests[0]["tools"]] == ["add"]


def test_a_model_stuck_calling_tools_stops_at_max_steps_and_usage_is_kept(
        server: OpenAIServer) -> None:
    adder = Adder()
    loop = Reply(None, tool_calls=[{"name": "add", "arguments": {"a": 1, "b": 1}}], usage=(5, 1))
    server.script(loop, loop, loop)
    client = client_with_llm(make_agent(), config_for(server))
    assert client.kit.llm is not None
    with pytest.raises(LLMError, match="after 2 tool rounds"):
        client.kit.llm.chat("loop", tools=[adder], max_steps=2)
    assert len(adder.calls) == 2 and exchanges(client) == []
    [(_, data)] = [(op, d) for op, d in client.journal if op == "llm_usage"]
    assert data["usage"]["total_tokens"] == 18
    assert client.kit.llm.usage["failures"] == 1


def test_persistent_500_raises_llm_error_and_journals_no_exchange(
        server: OpenAIServer) -> None:
    server.script(Status(500), Status(500))
    client = client_with_llm(make_agent(), config_for(server, max_retries=1))
    with pytest.raises(LLMError) as caught:
        assert client.kit.llm is not None
        client.kit.llm.chat("anyone there?")
    assert caught.value.status == 500 and caught.value.attempts == 2
    assert client.journal == []  # nothing was spent, nothing to record


def test_a_500_then_success_is_one_clean_exchange(server: OpenAIServer) -> None:
    server.script(Status(502), Reply("back"))
    client = client_with_llm(make_agent(), config_for(server))
    assert client.call({"q": "hello?"})["answer"] == "back"
    assert len(exchanges(client)) == 1 and len(server.requests) == 2


def test_without_configuration_ctx_llm_is_none_and_the_agent_says_so() -> None:
    assert LLMConfig.from_env({}) is None
    client = make_agent().test_client()
    assert client.kit.llm is None
    assert client.call({"q": "hi"}) == {
        "answer": "No LLM is configured; answering from memory only."}
    client.kit.use_llm(None)
    assert client.kit.context("r").llm is None


def test_history_survives_a_checkpoint_round_trip_and_a_replay(server: OpenAIServer) -> None:
    server.script(Reply("one"), Reply("two"), Reply("three"))
    agent = make_agent()
    client = client_with_llm(agent, config_for(server))
    for question in ("q1", "q2", "q3"):
        client.call({"q": question})
    payload = msgpack.unpackb(msgpack.packb(client.kit.state.payload(), use_bin_type=True),
                              raw=False)

    restored = AgentKit(agent, lambda operation, data: None, llm=config_for(server))
    restored.state.load(payload)
    replayed = AgentKit(agent, lambda operation, data: None)
    for operation, data in client.journal:
        replayed.state.apply(operation, data)

    assert restored.llm is not None and client.kit.llm is not None
    assert restored.llm.history() == client.kit.llm.history()
    assert [m["content"] for m in restored.llm.history()] == ["q1", "one", "q2", "two",
                                                               "q3", "three"]
    assert restored.llm.usage == client.kit.llm.usage
    assert replayed.state.payload()["llm_history"] == payload["llm_history"]


def test_the_api_key_never_reaches_the_journal_or_a_checkpoint(server: OpenAIServer) -> None:
    leaky = FunctionTool("env", "Read the environment.", {"type": "object", "properties": {}},
                         lambda arguments: f"PROJECT_O_LLM_API_KEY={KEY}")
    server.script(Reply(None, tool_calls=[{"name": "env", "arguments": {}}]),
                  Reply(f"I saw {KEY}"), Status(401, f"bad key {KEY}"))
    client = client_with_llm(make_agent(), config_for(server))
    assert client.kit.llm is not None
    client.kit.llm.chat("what is the key?", tools=[leaky])
    with pytest.raises(LLMError) as caught:
        client.kit.llm.chat("again")
    assert server.headers[0]["authorization"] == f"Bearer {KEY}"  # it was used...
    journal = msgpack.packb(client.journal, use_bin_type=True)
    checkpoint = msgpack.packb(client.kit.state.payload(), use_bin_type=True)
    assert KEY.encode() not in journal and KEY.encode() not in checkpoint  # ...never kept
    assert b"***" in journal
    assert KEY not in json.dumps(server.requests)  # nor any prompt: tool output is redacted too
    assert KEY not in str(caught.value) and KEY not in repr(client.kit.llm)


def test_bad_calls_are_invalid_arguments_before_any_request(server: OpenAIServer) -> None:
    llm = client_with_llm(make_agent(), config_for(server)).kit.llm
    assert llm is not None
    with pytest.raises(InvalidArgument, match="role"):
        llm.chat([{"content": "no role"}])
    with pytest.raises(InvalidArgument, match="sets"):
        llm.chat("hi", stream_options={})
    with pytest.raises(InvalidArgument, match="tool name"):
        llm.chat("hi", tools=[FunctionTool("bad name!", "", {}, lambda a: None)])
    with pytest.raises(InvalidArgument, match="needs name"):
        llm.chat("hi", tools=[object()])  # type: ignore[list-item]
    assert server.requests == []


def test_forget_and_one_off_chats(server: OpenAIServer) -> None:
    server.script(Reply("kept"), Reply("not kept"))
    client = client_with_llm(make_agent(), config_for(server))
    llm = client.kit.llm
    assert llm is not None
    llm.chat("remember this")
    llm.chat("just once", conversation=None)
    assert [m["content"] for m in llm.history()] == ["remember this", "kept"]
    assert server.requests[1]["messages"] == [{"role": "user", "content": "just once"}]
    llm.forget()
    assert llm.history() == [] and llm.usage["calls"] == 2
    assert client.journal[-1] == ("llm_forget", {"conversation": "default"})


def test_an_injected_client_controls_the_backoff(server: OpenAIServer) -> None:
    server.script(Status(429), Reply("ok"))
    waits: list[float] = []
    config = config_for(server, backoff_base=2.0)
    kit = AgentKit(make_agent(), lambda operation, data: None)
    llm = LLM(config, kit.llm_history, kit.journal, client=LLMClient(config, sleep=waits.append))
    assert llm.chat("hi").usage == Usage(10, 5, 15)
    assert len(waits) == 1 and 1.0 <= waits[0] <= 2.0


def test_tools_true_offers_the_dsl_tools_of_the_request(server: OpenAIServer) -> None:
    agent = Agent("dsl-tools")

    @agent.tool
    def multiply(a: int, b: int) -> int:
        """Multiply two integers."""
        return a * b

    @agent.handler
    def handle(ctx: Any, request: str) -> dict[str, Any]:
        reply = ctx.llm.chat(request, tools=True)
        return {"answer": reply.text,
                "results": [(r.content, r.error) for r in reply.tool_results]}

    server.script(
        Reply(None, tool_calls=[{"id": "bad", "name": "multiply", "arguments": {"a": "six"}}]),
        Reply(None, tool_calls=[{"id": "ok", "name": "multiply", "arguments": {"a": 6, "b": 7}}]),
        Reply("42"),
    )
    client = client_with_llm(agent, config_for(server))
    out = client.call("6 * 7?")
    assert out["answer"] == "42"
    [offered] = server.requests[0]["tools"]
    assert offered["function"]["name"] == "multiply"
    assert sorted(offered["function"]["parameters"]["properties"]) == ["a", "b"]
    (bad, bad_failed), (good, good_failed) = out["results"]
    assert bad_failed and json.loads(bad)["error"]["type"] == "invalid_arguments"
    assert (good, good_failed) == ("42", False)


def test_a_slow_call_keeps_the_idle_hook_beating_and_tokens_on_the_callers_thread(
        server: OpenAIServer) -> None:
    pieces = ["slow ", "but ", "sure"]
    server.script(Delay(0.5, Reply("".join(pieces), chunks=pieces)))
    client = client_with_llm(make_agent(), config_for(server))
    beats: list[str] = []
    client.kit.idle = lambda: beats.append(threading.current_thread().name)
    seen: list[tuple[str, str]] = []
    assert client.kit.llm is not None
    reply = client.kit.llm.chat("take your time", stream=True,
                                on_token=lambda t: seen.append((t, threading.current_thread().name)))
    caller = threading.current_thread().name
    assert reply.text == "slow but sure"
    assert seen == [(piece, caller) for piece in pieces]
    assert beats and set(beats) == {caller}  # the heartbeat hook ran while the call waited


def test_tool_calls_nobody_offered_are_returned_but_not_kept(server: OpenAIServer) -> None:
    server.script(Reply("Let me check.", tool_calls=[{"name": "search", "arguments": {}}]),
                  Reply("ok"))
    llm = client_with_llm(make_agent(), config_for(server)).kit.llm
    assert llm is not None
    reply = llm.chat("look it up")  # no tools offered
    assert [call.name for call in reply.tool_calls] == ["search"]
    assert llm.history()[-1] == {"role": "assistant", "content": "Let me check."}
    llm.chat("and?")
    assert all("tool_calls" not in m for m in server.requests[1]["messages"])


def test_achat_runs_the_same_tool_loop_on_an_event_loop(server: OpenAIServer) -> None:
    import asyncio

    from project_o.llm.history import LLMHistory

    server.script(
        Reply(tool_calls=[{"name": "add", "arguments": '{"a": 2, "b": 3}'}]),
        Reply("2 + 3 = 5", chunks=["2 + 3", " = 5"]),
    )
    adder, journaled, tokens = Adder(), [], []
    history = LLMHistory()

    async def journal(operation: str, data: dict[str, Any]) -> None:
        journaled.append(operation)

    llm = LLM(config_for(server), history, lambda op, data: None, journal_async=journal)
    reply = asyncio.run(llm.achat("2+3?", tools=[adder], stream=True, on_token=tokens.append))
    assert (reply.text, reply.steps, adder.calls) == ("2 + 3 = 5", 2, [{"a": 2, "b": 3}])
    assert tokens == ["2 + 3", " = 5"]
    assert journaled == ["llm_exchange"] and history.usage["calls"] == 1
    assert [m["role"] for m in history.messages("default")] == ["user", "assistant", "tool",
                                                                 "assistant"]
