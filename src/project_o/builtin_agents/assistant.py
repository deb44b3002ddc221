"""The built-in assistant: remembers what it is told and answers from memory.

Works offline. Every fact goes through ``ctx.memory`` (journaled in the
vault's WAL before the write returns), so nothing it was told is lost when
its process dies.

    "remember the capital of France is Paris"  -> stores a fact
    "what is the capital of France?"           -> answers from the best fact, citing it
    "forget 3"                                 -> deletes fact 3
    "facts"                                    -> lists what it knows
"""

from __future__ import annotations

import re
from typing import Any

from project_o import Agent

agent = Agent("assistant")

_WORD = re.compile(r"[a-z0-9]+")
#: words too common to say anything about which fact a question is about
_STOPWORDS = frozenset("a an the is are was were of to in on at and or what who where "
                       "when which how do does did i you me my your it that this".split())


def _terms(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOPWORDS}


def _facts(ctx: Any) -> list[tuple[str, str]]:
    return [(k, ctx.memory.get(k)) for k in sorted(ctx.memory.keys()) if k.startswith("fact:")]


@agent.handler
def handle(ctx: Any, request: Any) -> dict[str, Any]:
    """Answer one request (a string, or {"text": ...})."""
    text = request.get("text", "") if isinstance(request, dict) else str(request)
    text = text.strip()
    lowered = text.lower()
    if lowered.startswith("remember "):
        fact = text[len("remember "):].strip()
        number = int(ctx.memory.get("next_fact", 1))
        ctx.memory.set(f"fact:{number:06d}", fact)
        ctx.memory.set("next_fact", number + 1)
        return {"answer": f"I will remember that (fact {number}).", "fact": number}
    if lowered.startswith("forget "):
        key = f"fact:{int(lowered.split()[1]):06d}"
        known = ctx.memory.get(key) is not None
        if known:
            ctx.memory.delete(key)
        return {"answer": "Forgotten." if known else "I did not know that fact."}
    if lowered in ("facts", "what do you know?", "what do you know"):
        facts = [fact for _, fact in _facts(ctx)]
        return {"answer": f"I know {len(facts)} facts.", "facts": facts}
    return _answer(ctx, text)


def _answer(ctx: Any, question: str) -> dict[str, Any]:
    wanted = _terms(question)
    scored = sorted(
        ((len(wanted & _terms(fact)), key, fact) for key, fact in _facts(ctx)),
        reverse=True,
    )
    if not scored or scored[0][0] == 0:
        return {"answer": "I don't know yet. Tell me with: remember <fact>.", "citations": []}
    best, key, fact = scored[0]
    return {"answer": fact, "citations": [{"fact": int(key.split(":")[1]), "text": fact}]}
