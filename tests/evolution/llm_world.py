"""A tiny agent, its task and a deterministic two-model "LLM" for the LLM-evolution tests.

The agent returns a level; the task scores it and reports the levels still
missing as failing cases (an artifact). The server's responder plays two
models: ``smart`` reads the level out of the prompt's code and proposes one
more (a child that beats its parent); ``dull`` answers without an edit (no
child). Both report fixed token usage, so costs are known exactly.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from project_o.evolution.llm_budget import Budget, LLMLedger, Price, Prices
from project_o.evolution.llm_ensemble import LLMEnsemble
from project_o.evolution.model_bandit import ModelBandit
from project_o.llm.client import LLMClient
from project_o.llm.config import LLMConfig
from tests.agent.openai_server import OpenAIServer, Reply

AGENT = '''from project_o import Agent

agent = Agent("levels")


@agent.evolvable
def level():
    return 1


@agent.handler
def handle(ctx, request):
    return {"level": level()}
'''

TASK = '''
TARGET = 12


def evaluate(agent):
    n = agent.function("level")()
    failing = [f"case {k}: level() is {n}, needs {k}" for k in range(n + 1, TARGET + 1)]
    return {"score": float(n), "artifacts": {"failing_cases": "\\n".join(failing) or "none"}}
'''

MODELS = ("smart", "dull")
USAGE = {"smart": (100, 20), "dull": (50, 5)}
PRICES = {"smart": Price(1.0, 2.0), "dull": Price(0.5, 0.5)}  # USD per million tokens
_LEVEL = re.compile(r"^    return (\d+)$", re.MULTILINE)


def respond(body: dict[str, Any]) -> Reply:
    """The two models' answers (see the module docstring)."""
    model = body["model"]
    if model == "dull":
        return Reply("The code looks fine to me.", usage=USAGE["dull"])
    prompt = body["messages"][-1]["content"]
    n = int(_LEVEL.search(prompt).group(1))  # type: ignore[union-attr]
    edit = (f"One more level.\n\nagent.py\n<<<<<<< SEARCH\n    return {n}\n=======\n"
            f"    return {n + 1}\n>>>>>>> REPLACE\n")
    return Reply(edit, usage=USAGE["smart"])


def call_cost(model: str) -> float:
    """What one call of ``model`` costs, in USD."""
    prompt, completion = USAGE[model]
    return (prompt * PRICES[model].prompt + completion * PRICES[model].completion) / 1e6


def write_world(root: Path) -> tuple[Path, Path]:
    """The agent and task files under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "agent.py").write_text(AGENT)
    (root / "task.py").write_text(TASK)
    return root / "agent.py", root / "task.py"


def ensemble(server: OpenAIServer, budget: Budget | None = None) -> LLMEnsemble:
    """Both models on ``server``, priced, with ``budget``."""
    clients = {m: LLMClient(LLMConfig(model=m, base_url=server.base_url, max_retries=0))
               for m in MODELS}
    return LLMEnsemble(clients, ledger=LLMLedger(Prices(PRICES), budget),
                       bandit=ModelBandit(MODELS))
