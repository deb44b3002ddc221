"""An agent that exercises every durable memory: one action per ``request["do"]``.

::

    do              what the handler does
    --------------  ------------------------------------------------------------
    remember        ctx.memory.remember(text, **metadata)          -> id
    bulk            remember ``count`` numbered facts               -> ids
    forget          ctx.memory.forget(id)                           -> bool
    define          ctx.memory.blocks.define(name, limit=, description=)
    block_set       ctx.memory.blocks.set(name, text)
    block_append    ctx.memory.blocks.append(name, text)
    record          ctx.history.record(role, content, **metadata)  -> seq
    digest          everything observable: recall and search answers for
                    ``questions``, blocks rendered, the whole history
    pid             the instance's pid

Used by tests/agent/test_memory_durability.py under a real supervisor.
"""

from __future__ import annotations

import os
from typing import Any

from project_o import Agent
from project_o.agent.context import Context

agent = Agent("memory-e2e")


def _digest(ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    questions = request.get("questions", [])
    return {
        "count": len(ctx.memory.semantic),
        "recall": {q: [[h.id, round(h.score, 5)] for h in ctx.memory.recall(q, k=5)]
                   for q in questions},
        "recall_where": {q: [h.id for h in ctx.memory.recall(q, k=3, where={"kind": "fact"})]
                         for q in questions},
        "search": {q: [h.id for h in ctx.memory.search(q, k=3)] for q in questions},
        "blocks": ctx.memory.blocks.render(),
        "limits": {name: ctx.memory.blocks.block(name).limit  # type: ignore[union-attr]
                   for name in ctx.memory.blocks.names()},
        "history": [e.to_dict() for e in ctx.history.recent(1000)],
    }


@agent.handler
def handle(ctx: Context, request: dict[str, Any]) -> Any:
    do = request["do"]
    if do == "remember":
        return ctx.memory.remember(request["text"], **request.get("metadata", {}))
    if do == "bulk":
        return [ctx.memory.remember(f"bulk fact number {n} about item {n % 97}", kind="bulk")
                for n in range(request["count"])]
    if do == "forget":
        return ctx.memory.forget(request["id"])
    if do == "define":
        ctx.memory.blocks.define(request["name"], limit=request["limit"],
                                 description=request.get("description", ""))
        return None
    if do == "block_set":
        ctx.memory.blocks.set(request["name"], request["text"])
        return None
    if do == "block_append":
        ctx.memory.blocks.append(request["name"], request["text"])
        return None
    if do == "record":
        return ctx.history.record(request["role"], request["content"],
                                  **request.get("metadata", {}))
    if do == "digest":
        return _digest(ctx, request)
    if do == "pid":
        return os.getpid()
    raise ValueError(f"unknown action {do!r}")
