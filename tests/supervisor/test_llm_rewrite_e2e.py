"""The LLM rewrite operator inside the supervisor, against a local OpenAI-compatible server."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.agent.openai_server import OpenAIServer, Reply
from tests.supervisor.harness import FAST_HEARTBEAT, Stack
from tests.supervisor.test_evolution_e2e import BASE

pytestmark = pytest.mark.slow

EDIT = """evolving_agent.py
<<<<<<< SEARCH
DELAY = 0.01
=======
DELAY = 0.0
>>>>>>> REPLACE
"""


def test_an_llm_rewrite_becomes_a_candidate_and_no_secret_reaches_the_model(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    agent = tmp_path / "evolving_agent.py"
    agent.write_text(BASE)
    with OpenAIServer() as server:
        server.script(Reply(EDIT))
        monkeypatch.setenv("PROJECT_O_LLM_BASE_URL", server.base_url)
        monkeypatch.setenv("PROJECT_O_LLM_MODEL", "test-model")
        monkeypatch.setenv("PROJECT_O_LLM_API_KEY", "sk-never-in-a-prompt")
        monkeypatch.setenv("SOME_SECRET_TOKEN", "hunter2-planted")
        stack = Stack(tmp_path / "vault", ["--agent", str(agent), *FAST_HEARTBEAT])
        try:
            assert stack.http is not None
            created = stack.http.post("/v1/evolution/experiments", json={
                "kind": "shadow", "candidate": {"operator": "llm_rewrite"},
                "hypothesis": "the sleep is wasted time"})
            assert created.status_code == 201, created.text
            assert created.json()["candidate_version"] != created.json()["baseline_version"]
        finally:
            stack.stop()
        prompt = str(server.requests[0]["messages"])
        assert "DELAY = 0.01" in prompt and "the sleep is wasted time" in prompt
        assert "sk-never-in-a-prompt" not in prompt and "hunter2-planted" not in prompt
