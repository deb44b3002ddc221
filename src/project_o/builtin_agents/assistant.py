"""The built-in assistant: remembers what it is told, answers from memory and tools.

Works fully offline. Every memory goes through ``ctx.memory`` (journaled in
the vault's WAL before the write returns), so nothing it was told is lost
when its process dies.

    "remember the capital of France is Paris"  -> stores a memory
    "what is the capital of France?"           -> answers from memory, citing what it used
    "calc 2 * (3 + 4)" / "what is 12 / 5?"     -> the calculator tool
    "what time is it?"                         -> the clock tool
    "forget <id>"                              -> forgets a memory
    "facts"                                    -> what it knows

Retrieval has three strategies (semantic vectors, keywords, both); which
one answers is chosen by Thompson sampling over the feedback users gave to
each (``POST /v1/feedback``), kept in durable memory — the agent learns
which way of answering people rate well. With an LLM configured
(``PROJECT_O_LLM_BASE_URL`` / ``_MODEL`` / ``_API_KEY``) it answers with the
model, given the memories it retrieved and its tools; without one it says
so plainly and never pretends to be a model.
"""

from __future__ import annotations

import ast
import datetime as _dt
import operator
import random
import re
import zlib
from typing import Any

from project_o import Agent

agent = Agent("assistant")

#: how answers are retrieved; the bandit picks one per question
STRATEGIES = ("semantic", "keyword", "hybrid")
#: a memory must score at least this to be cited (cosine similarity)
MIN_SEMANTIC_SCORE = 0.15
BANDIT_KEY = "bandit"
_ARITHMETIC = re.compile(r"^[\d\s.+\-*/%()^]+$")
_OPERATORS: dict[type, Any] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.Mod: operator.mod, ast.Pow: operator.pow,
    ast.FloorDiv: operator.floordiv, ast.USub: operator.neg, ast.UAdd: operator.pos,
}
#: exponents above this are refused: 9**9**9 would hang the instance
MAX_EXPONENT = 1000


@agent.tool
def calculator(expression: str) -> float:
    """Evaluate an arithmetic expression.

    Args:
        expression: numbers with + - * / % ** // and parentheses, e.g. "2 * (3 + 4)".
    """
    return _evaluate(ast.parse(expression.replace("^", "**"), mode="eval").body)


@agent.tool
def clock() -> str:
    """The current date and time (UTC, ISO 8601)."""
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


@agent.tool
def memory_search(ctx: Any, query: str, k: int = 3) -> list[dict[str, Any]]:
    """Search the assistant's memories.

    Args:
        query: what to look for.
        k: how many memories to return.
    """
    return [_cite(hit) for hit in ctx.memory.recall(query, k=k)]


@agent.handler
def handle(ctx: Any, request: Any) -> dict[str, Any]:
    """Answer one request (a string, or {"text": ...}); any other JSON is read as text."""
    text = _text_of(request)
    if not text:
        return {"answer": "Ask me something: a question, 'remember <fact>' or "
                          "'calc <expression>'."}
    lowered = text.lower()
    if lowered.startswith("remember "):
        memory_id = ctx.memory.remember(text[len("remember "):].strip(), source="user")
        return {"answer": "I will remember that.", "memory": memory_id}
    if lowered.startswith("forget "):
        known = ctx.memory.forget(text.split(maxsplit=1)[1])
        return {"answer": "Forgotten." if known else "I did not know that memory."}
    if lowered in ("facts", "what do you know?", "what do you know"):
        store = ctx.memory.semantic.store
        facts = [store.get(memory_id).text for memory_id in store.ids()]
        return {"answer": f"I know {len(facts)} things.", "facts": facts}
    tool_answer = _try_tools(ctx, lowered)
    if tool_answer is not None:
        return tool_answer
    return _answer(ctx, text)


def _text_of(request: Any) -> str:
    value = request.get("text") if isinstance(request, dict) else request
    return ("" if value is None else str(value)).strip()


def _try_tools(ctx: Any, lowered: str) -> dict[str, Any] | None:
    expression = lowered.removeprefix("calc ").removeprefix("what is ").rstrip("?").strip()
    if lowered.startswith("calc ") or (_ARITHMETIC.match(expression) and any(
            c.isdigit() for c in expression)):
        result = ctx.tools.call("calculator", expression=expression)
        if isinstance(result, dict) and "error" in result:
            return {"answer": f"I could not compute that: {result['error']['message']}",
                    "tool": "calculator"}
        return {"answer": f"{expression} = {result:g}", "tool": "calculator"}
    if "what time" in lowered or lowered in ("time", "date", "now"):
        return {"answer": f"It is {ctx.tools.call('clock')}.", "tool": "clock"}
    return None


def _answer(ctx: Any, question: str) -> dict[str, Any]:
    strategy = _choose_strategy(ctx)
    hits = _retrieve(ctx, question, strategy)
    ctx.history.record("assistant", question, strategy=strategy)
    if ctx.llm is not None:
        return _answer_with_llm(ctx, question, hits, strategy)
    if not hits:
        return {"answer": "I don't know yet. Tell me with: remember <fact>. "
                          "(No LLM is configured; I answer from memory and tools.)",
                "citations": [], "strategy": strategy, "llm": False}
    return {"answer": hits[0].text, "citations": [_cite(h) for h in hits[:3]],
            "strategy": strategy, "llm": False,
            "note": "No LLM is configured; this is the best matching memory."}


def _answer_with_llm(ctx: Any, question: str, hits: list[Any], strategy: str) -> dict[str, Any]:
    context = "\n".join(f"[{h.id}] {h.text}" for h in hits) or "(nothing relevant remembered)"
    system = (f"{ctx.memory.blocks.render()}\nAnswer using these memories when relevant and "
              f"cite their ids in brackets:\n{context}")
    reply = ctx.llm.chat(question, system=system, tools=True)
    return {"answer": reply.text, "citations": [_cite(h) for h in hits[:3]],
            "strategy": strategy, "llm": True, "model": reply.model}


def _retrieve(ctx: Any, question: str, strategy: str) -> list[Any]:
    semantic = [h for h in ctx.memory.recall(question, k=5) if h.score >= MIN_SEMANTIC_SCORE]
    if strategy == "semantic":
        return semantic
    keyword = list(ctx.memory.search(question, k=5))
    if strategy == "keyword":
        return keyword
    # Hybrid: semantic hits first (their cosine scores are comparable), then keyword-only ones.
    seen = {h.id for h in semantic}
    return semantic + [h for h in keyword if h.id not in seen]


def _choose_strategy(ctx: Any) -> str:
    """Thompson sampling over the feedback each strategy received."""
    stats = ctx.memory.get(BANDIT_KEY, {})
    # Seeded by the request id: a request re-dispatched after a crash picks the same strategy.
    rng = random.Random(zlib.crc32(str(ctx.request_id).encode()))
    draws = {s: rng.betavariate(1 + stats.get(s, [0, 0])[0], 1 + stats.get(s, [0, 0])[1])
             for s in STRATEGIES}
    return max(STRATEGIES, key=lambda s: draws[s])


@agent.on_feedback
def learn(ctx: Any, feedback: dict[str, Any]) -> None:
    """Credit the strategy that answered the rated request."""
    answered = [e for e in ctx.history.conversation(feedback["request_id"])
                if e.metadata.get("strategy")]
    if not answered:
        return
    strategy = answered[-1].metadata["strategy"]
    stats = ctx.memory.get(BANDIT_KEY, {})
    wins, losses = stats.get(strategy, [0, 0])
    if feedback["score"] > 0:
        wins += 1
    elif feedback["score"] < 0:
        losses += 1
    stats[strategy] = [wins, losses]
    ctx.memory.set(BANDIT_KEY, stats)


def _cite(hit: Any) -> dict[str, Any]:
    return {"id": hit.id, "text": hit.text, "score": round(float(hit.score), 3)}


def _evaluate(node: ast.AST) -> float:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > MAX_EXPONENT:
            raise ValueError(f"exponent {right} is too large")
        return float(_OPERATORS[type(node.op)](left, right))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _OPERATORS:
        return float(_OPERATORS[type(node.op)](_evaluate(node.operand)))
    raise ValueError("only numbers and + - * / % ** // ( ) are allowed")
