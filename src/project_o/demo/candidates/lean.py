"""Candidate 2: the same linear scan without the redundant per-fact digests."""

from __future__ import annotations

from typing import Any

from project_o.demo.agent import FACT_PREFIX, agent

# -- candidate --


@agent.evolvable
def search_facts(memory: Any, query: str) -> list[str]:
    """Keys of the facts that share the most words with ``query``, best first."""
    words = set(query.lower().split())
    scored = []
    for key in memory:
        if not key.startswith(FACT_PREFIX):
            continue
        # no digest rounds: nothing ever read them, and the answers stay the same
        score = len(words & set(memory.get(key)["text"].lower().split()))
        if score:
            scored.append((-score, key))
    return [key for _, key in sorted(scored)]
