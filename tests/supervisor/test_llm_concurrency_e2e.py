"""Many ctx.llm calls in flight at once in one instance, through a real supervisor.

The model (the local OpenAI-compatible server) holds every first call
until all the requests' calls are at it, so the answers can only come if
the calls are truly in flight together; then it asks for a tool and
streams a final answer that names the request's own word. Each request
must get its own answer, its own streamed pieces and its own tool result,
with a plain handler on the thread pool (``ctx.llm.chat``) and with an
``async def`` handler on the instance's loop (``await ctx.llm.achat``).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.agent.openai_server import OpenAIServer, Reply
from tests.supervisor.harness import FAST_HEARTBEAT, ROOT, Stack

SYNC_AGENT = ROOT / "tests" / "fixtures" / "secrets_agent.py"
ASYNC_AGENT = ROOT / "tests" / "fixtures" / "async_agent.py"
#: requests (and so first LLM calls) in flight together
IN_FLIGHT = 8
#: how long the model waits for all of them before it answers anyway
GATHER_TIMEOUT_S = 30.0


class GatheringModel:
    """A responder: the first call of each chat waits for all ``n``; then a tool, then text."""

    def __init__(self, n: int, tool: str, argument: str) -> None:
        self._n = n
        self._tool, self._argument = tool, argument
        self._lock = threading.Lock()
        self._arrived = 0
        self._all_here = threading.Event()
        #: whether each first call saw all n at the model at once
        self.gathered: list[bool] = []

    def __call__(self, body: dict[str, Any]) -> Reply:
        messages = body["messages"]
        word = next(m["content"] for m in messages if m["role"] == "user")
        if messages[-1]["role"] == "tool":
            final = f"{word} -> {messages[-1]['content']}"
            return Reply(final, chunks=[f"{word} -> ", messages[-1]["content"]])
        with self._lock:
            self._arrived += 1
            if self._arrived >= self._n:
                self._all_here.set()
        here = self._all_here.wait(GATHER_TIMEOUT_S)
        with self._lock:
            self.gathered.append(here)
        return Reply(tool_calls=[{"name": self._tool,
                                  "arguments": json.dumps({self._argument: word})}])


@pytest.fixture
def model() -> Iterator[OpenAIServer]:
    with OpenAIServer() as server:
        yield server


def _serve(tmp_path: Path, agent: Path, model: OpenAIServer) -> Stack:
    env = {"PROJECT_O_LLM_BASE_URL": model.base_url, "PROJECT_O_LLM_MODEL": "test-model",
           "PROJECT_O_LLM_API_KEY": "sk-concurrent-llm-5d1e", "PROJECT_O_LLM_MAX_RETRIES": "0"}
    return Stack(tmp_path / "vault", ["--agent", str(agent), *FAST_HEARTBEAT], env=env)


def _chat_all(stack: Stack, words: list[str], **fields: Any) -> list[dict[str, Any]]:
    with ThreadPoolExecutor(len(words)) as pool:
        responses = list(pool.map(lambda word: stack.do("chat", text=word, **fields), words))
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    return [r.json()["output"] for r in responses]


def test_concurrent_async_handlers_each_get_their_own_streamed_answer_and_tool(
        tmp_path: Path, model: OpenAIServer) -> None:
    gathering = GatheringModel(IN_FLIGHT, "shout", "word")
    model.respond_with(gathering)
    words = [f"word{i}" for i in range(IN_FLIGHT)]
    stack = _serve(tmp_path, ASYNC_AGENT, model)
    try:
        pid = stack.main_pid()
        outputs = _chat_all(stack, words)
        assert gathering.gathered == [True] * IN_FLIGHT  # all in flight at once
        for word, out in zip(words, outputs, strict=True):
            assert out["text"] == f"{word} -> {word.upper()}"
            assert out["pieces"] == [f"{word} -> ", word.upper()]
            assert (out["steps"], out["tool_results"]) == (2, [word.upper()])
        # The blocking form on the loop is refused with a clear error, and the instance lives.
        refused = stack.do("sync_chat", text="hi")
        assert refused.status_code != 200 and "achat" in refused.text
        assert stack.main_pid() == pid
    finally:
        stack.stop()


def test_concurrent_sync_handlers_each_get_their_own_streamed_answer_and_tool(
        tmp_path: Path, model: OpenAIServer) -> None:
    gathering = GatheringModel(IN_FLIGHT, "population", "city")
    model.respond_with(gathering)
    words = [f"town{i}" for i in range(IN_FLIGHT)]
    stack = _serve(tmp_path, SYNC_AGENT, model)
    try:
        pid = stack.main_pid()
        outputs = _chat_all(stack, words, conversation=None)
        assert gathering.gathered == [True] * IN_FLIGHT
        for word, out in zip(words, outputs, strict=True):
            assert out["text"] == f"{word} -> unknown"  # the agent's population tool's answer
            assert out["pieces"] == [f"{word} -> ", "unknown"]
            assert (out["steps"], out["tool_results"]) == (2, ["unknown"])
        # Every exchange journaled: the one applied last sees them all.
        assert max(out["usage"]["calls"] for out in outputs) == IN_FLIGHT
        assert stack.main_pid() == pid
    finally:
        stack.stop()
