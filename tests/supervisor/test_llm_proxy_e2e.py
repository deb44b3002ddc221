"""ctx.llm through a real supervisor: the supervisor calls the model, the key never enters.

A real supervisor serves ``tests/fixtures/secrets_agent.py`` against the
local OpenAI-compatible server; the agent's chat streams, calls a tool,
and the usage lands in the catalog and the metrics. The same agent then
looks for the key and the endpoint everywhere it can read.
"""

from __future__ import annotations

import socket
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.agent.openai_server import OpenAIServer, Reply
from tests.supervisor.harness import FAST_HEARTBEAT, ROOT, Stack

AGENT = ROOT / "tests" / "fixtures" / "secrets_agent.py"
KEY = "sk-proxy-test-3f9c2a7e11"


@pytest.fixture
def model() -> Iterator[OpenAIServer]:
    with OpenAIServer() as server:
        yield server


def _llm_env(base_url: str, retries: int = 2) -> dict[str, str]:
    return {"PROJECT_O_LLM_BASE_URL": base_url, "PROJECT_O_LLM_MODEL": "test-model",
            "PROJECT_O_LLM_API_KEY": KEY, "PROJECT_O_LLM_MAX_RETRIES": str(retries)}


def _serve(tmp_path: Path, env: dict[str, str], *, heart: bool = False,
           args: tuple[str, ...] = ()) -> Stack:
    return Stack(tmp_path / "vault", ["--agent", str(AGENT), *FAST_HEARTBEAT, *args],
                 heart=heart, env=env)


def test_a_streamed_chat_with_a_tool_goes_through_the_supervisor(
        tmp_path: Path, model: OpenAIServer) -> None:
    model.script(
        Reply(tool_calls=[{"name": "population", "arguments": '{"city": "Paris"}'}],
              usage=(20, 7)),
        Reply("Paris has 2.1 million people.", chunks=["Paris has ", "2.1 million", " people."],
              usage=(40, 9)),
    )
    stack = _serve(tmp_path, _llm_env(model.base_url),
                   args=("--llm-price", "test-model=1000,2000"))
    try:
        response = stack.do("chat", text="How many people live in Paris?")
        assert response.status_code == 200, response.text
        out = response.json()["output"]
        assert out["text"] == "Paris has 2.1 million people."
        assert out["pieces"] == ["Paris has ", "2.1 million", " people."]  # streamed, in order
        assert (out["steps"], out["tool_results"]) == (2, ["2.1 million"])
        assert out["usage"]["calls"] == 1 and out["usage"]["total_tokens"] == 76
        # The model saw the tool's answer, and the key came from the supervisor.
        assert [m["role"] for m in model.requests[1]["messages"]][-2:] == ["assistant", "tool"]
        assert all(r["stream"] is True for r in model.requests)
        assert all(h.get("authorization") == f"Bearer {KEY}" for h in model.headers)
        metrics = stack.http.get("/metrics").text if stack.http else ""
        assert 'project_o_llm_calls_total{outcome="ok",role="main"' in metrics
        assert 'kind="completion"' in metrics
    finally:
        stack.stop()
    rows = _usage_rows(tmp_path / "vault")
    assert [(r[1], r[2], r[3], r[4]) for r in rows] == [("test-model", "ok", 20, 7),
                                                          ("test-model", "ok", 40, 9)]
    assert all(r[0].startswith("instance:main-") for r in rows)
    # USD per million tokens: 20 * 1000 + 7 * 2000, then 40 * 1000 + 9 * 2000
    assert [round(r[5], 6) for r in rows] == [0.034, 0.058]


def test_a_tool_on_its_worker_thread_asks_the_model_through_the_handlers_socket(
        tmp_path: Path, model: OpenAIServer) -> None:
    model.script(Reply("from inside the tool"))
    stack = _serve(tmp_path, _llm_env(model.base_url))
    try:
        response = stack.do("tool_chat", text="hello from a tool")
        assert response.status_code == 200, response.text
        assert response.json()["output"] == {"result": "from inside the tool"}
        assert model.requests[0]["messages"][-1]["content"] == "hello from a tool"
    finally:
        stack.stop()


def test_the_key_and_endpoint_are_nowhere_an_instance_can_look(
        tmp_path: Path, model: OpenAIServer) -> None:
    stack = _serve(tmp_path, _llm_env(model.base_url), heart=True)
    try:
        supervisor = stack.supervisor_pid()
        for needle in (KEY, model.base_url):
            out = stack.do("probe", needle=needle, pids=[supervisor, stack.process.pid]).json()
            probe = out["output"]
            assert probe["has_llm"] is True
            assert probe["found"] == [], f"{needle!r} found in {probe['found']}"
    finally:
        stack.stop()


def test_a_model_that_is_down_is_a_clean_error_and_the_supervisor_stays(
        tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    stack = _serve(tmp_path, _llm_env(f"http://127.0.0.1:{port}/v1", retries=0))
    try:
        pid = stack.supervisor_pid()
        out = stack.do("chat", text="anyone there?").json()["output"]
        assert out["error"] == "LLMError"
        assert "connection failed" in out["message"] and KEY not in out["message"]
        again = stack.do("chat", text="still nobody?")  # the same instance serves on
        assert again.status_code == 200 and again.json()["output"]["error"] == "LLMError"
        assert stack.supervisor_pid() == pid and stack.process.poll() is None
        assert stack.status()["supervisor_pid"] == pid
    finally:
        stack.stop()
    rows = _usage_rows(tmp_path / "vault")
    assert len(rows) == 2 and all(r[2].startswith("error: ") for r in rows)


def _usage_rows(vault: Path) -> list[tuple[str, str, str, int, int, float]]:
    with sqlite3.connect(vault / "catalog.sqlite") as db:
        return db.execute("SELECT run_id, model, outcome, prompt_tokens, completion_tokens,"
                          " cost_usd FROM llm_calls ORDER BY id").fetchall()
