"""The demo agent: remembers facts, and searches them far too slowly.

Requests (``{"do": ...}``)::

    teach    {"subject", "text"}         memory["fact:<subject>"] = {"subject", "text"}
    ask      {"query"}                   the best matching fact (search_facts), or None
    count    {}                          how many facts it knows
    improve  {"hypothesis", "source"}    ctx.evolve(hypothesis, source=source): the agent
                                         proposes a new version of itself

``search_facts`` is the evolvable bottleneck: a linear scan that unpacks
and re-hashes every fact for every query (:data:`SLOW_ROUNDS` digests per
fact stand for the per-item work of a naive implementation). The demo's
candidates replace exactly this function (see :mod:`project_o.demo.candidates`).
"""

from __future__ import annotations

import hashlib
from typing import Any

from project_o import Agent

agent = Agent("demo-memory")

#: key prefix of a fact in ctx.memory
FACT_PREFIX = "fact:"
#: sha256 rounds per fact per query: ~0.15 ms of work per fact, ~5 ms for 30 facts
SLOW_ROUNDS = 400


@agent.evolvable
def search_facts(memory: Any, query: str) -> list[str]:
    """Keys of the facts that share the most words with ``query``, best first."""
    words = set(query.lower().split())
    scored = []
    for key in memory:
        if not key.startswith(FACT_PREFIX):
            continue
        fact = memory.get(key)
        digest = fact["text"].encode()
        for _ in range(SLOW_ROUNDS):  # the naive per-item work evolution should remove
            digest = hashlib.sha256(digest).digest()
        score = len(words & set(fact["text"].lower().split()))
        if score:
            scored.append((-score, key))
    return [key for _, key in sorted(scored)]


@agent.handler
def handle(ctx: Any, request: dict[str, Any]) -> Any:
    action = request.get("do")
    if action == "teach":
        key = FACT_PREFIX + request["subject"]
        ctx.memory.set(key, {"subject": request["subject"], "text": request["text"]})
        return {"taught": key}
    if action == "ask":
        hits = search_facts(ctx.memory, request["query"])
        return {"answer": ctx.memory.get(hits[0])["text"] if hits else None, "hits": len(hits)}
    if action == "count":
        return {"facts": sum(1 for key in ctx.memory if key.startswith(FACT_PREFIX))}
    if action == "improve":
        return ctx.evolve(request["hypothesis"], source=request["source"])
    raise ValueError(f"unknown action {action!r}: expected teach, ask, count or improve")
