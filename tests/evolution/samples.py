"""Agent sources the evolution tests mutate (never imported: operators only read text)."""

from __future__ import annotations

from project_o.evolution.genome import Genome

AGENT = '''"""A sample agent with params and evolvable functions."""
from project_o import Agent

agent = Agent("sample")

THRESHOLD = agent.param("threshold", 0.5, low=0.0, high=1.0)
TOP_K = agent.param("top_k", 5, low=1, high=20)
MODE = agent.param("mode", "keyword", choices=["keyword", "vector", "hybrid"])
VERBOSE = agent.param("verbose", False)
LIMIT = agent.param("limit", compute_limit())  # not literal: cannot be read statically


@agent.evolvable
def score(query, fact):
    """How well fact answers query."""
    words = set(query.lower().split())
    hits = sum(1 for w in fact.lower().split() if w in words)
    # normalise by length so long facts don't always win
    return hits / (len(fact.split()) + 1.0) * 2


@agent.evolvable
def rank(query, facts, k=3):
    scored = [(score(query, f), f) for f in facts]
    scored.sort(reverse=True)
    if len(scored) > k and scored[0][0] >= 0.1:
        return scored[:k]
    return scored


def helper(x):  # not evolvable: never touched
    return x + 1


@agent.handler
def handle(ctx, request):
    return {"answer": rank(str(request), ["a b", "b c"])}
'''

#: the same agent with another body for score() (a second parent / donor)
AGENT_B = AGENT.replace(
    "    return hits / (len(fact.split()) + 1.0) * 2\n",
    "    bonus = 0.25 if fact.startswith(query) else 0.0\n"
    "    return hits - bonus * 3\n",
).replace("scored[0][0] >= 0.1", "scored[0][0] > 0.2")

PLAIN = '''from project_o import Agent

agent = Agent("plain")


@agent.handler
def handle(ctx, request):
    return request
'''


def sample(**params: object) -> Genome:
    """The sample agent as a single-file genome."""
    return Genome({"agent.py": AGENT}, params, operator="seed")


def sample_b(**params: object) -> Genome:
    """The second parent."""
    return Genome({"agent.py": AGENT_B}, params, operator="seed")
