"""The built-in assistant: memory with citations, tools, honesty without an LLM, learning."""

from __future__ import annotations

from typing import Any

import pytest

from project_o.builtin_agents.assistant import BANDIT_KEY, STRATEGIES, agent
from project_o.llm.config import LLMConfig
from tests.agent.openai_server import OpenAIServer, Reply

FACTS = [
    "the capital of France is Paris",
    "the project deadline is on Friday",
    "Alice prefers green tea in the morning",
    "the backup server runs every night at 2am",
]


@pytest.fixture
def client() -> Any:
    assistant = agent.test_client()
    for fact in FACTS:
        assert assistant.call(f"remember {fact}")["memory"]
    return assistant


def test_answers_from_memory_and_cites_what_it_used(client: Any) -> None:
    answer = client.call("what is the capital of France?")
    assert answer["answer"] == "the capital of France is Paris"
    assert answer["citations"][0]["text"] == "the capital of France is Paris"
    assert answer["strategy"] in STRATEGIES


@pytest.mark.parametrize("question", ["when does the backup server run?",
                                      "what does Alice like to drink in the morning?"])
def test_every_strategy_family_finds_paraphrased_facts(client: Any, question: str) -> None:
    cited = [c["text"] for c in client.call(question)["citations"]]
    assert any(word in " ".join(cited) for word in ("backup", "Alice"))


def test_says_plainly_that_no_llm_is_configured(client: Any) -> None:
    answer = client.call("what is the capital of France?")
    assert answer["llm"] is False
    assert "No LLM is configured" in answer["note"]
    unknown = agent.test_client().call("who wrote Hamlet?")
    assert "don't know" in unknown["answer"] and unknown["citations"] == []


def test_calculator_and_clock_tools(client: Any) -> None:
    assert client.call("calc 2 * (3 + 4)")["answer"] == "2 * (3 + 4) = 14"
    assert client.call("what is 12 / 5?")["answer"] == "12 / 5 = 2.4"
    refused = client.call("calc 9 ** 99999")
    assert "could not compute" in refused["answer"]
    assert "It is 20" in client.call("what time is it?")["answer"]


def test_forget_and_facts(client: Any) -> None:
    memory_id = client.call("remember the office plant is a fern")["memory"]
    assert "the office plant is a fern" in client.call("facts")["facts"]
    assert client.call(f"forget {memory_id}")["answer"] == "Forgotten."
    assert "the office plant is a fern" not in client.call("facts")["facts"]


def test_feedback_steers_the_strategy_bandit(client: Any) -> None:
    answer = client.call("what is the capital of France?", request_id="r-1")
    client.feedback("r-1", 1.0)
    client.feedback("r-1", -1.0)
    stats = client.memory.get(BANDIT_KEY)
    assert stats[answer["strategy"]] == [1, 1]


def test_a_well_rated_strategy_is_preferred(client: Any) -> None:
    client.memory.set(BANDIT_KEY, {"keyword": [50, 0], "semantic": [0, 50], "hybrid": [0, 50]})
    chosen = [client.call("what is the capital of France?", request_id=f"q-{n}")["strategy"]
              for n in range(20)]
    assert chosen.count("keyword") >= 18


def test_uses_the_llm_when_one_is_configured(client: Any) -> None:
    with OpenAIServer() as server:
        server.script(Reply("Paris [mem-1]."))
        client.kit.use_llm(LLMConfig(model="test-model", base_url=server.base_url,
                                     api_key="sk-test", max_retries=0))
        answer = client.call("what is the capital of France?")
        assert answer["llm"] is True and answer["answer"] == "Paris [mem-1]."
        system = server.requests[0]["messages"][0]["content"]
        assert "the capital of France is Paris" in system


@pytest.mark.parametrize("request_", [{}, {"text": None}, "", "   ", {"other": 1}])
def test_an_empty_request_gets_a_hint_not_an_error(client: Any, request_: Any) -> None:
    assert "Ask me something" in client.call(request_)["answer"]


@pytest.mark.parametrize("request_", [{"text": 42}, 3.5, ["capital", "France"], [], True])
def test_any_other_json_is_read_as_text(client: Any, request_: Any) -> None:
    assert isinstance(client.call(request_)["answer"], str)
