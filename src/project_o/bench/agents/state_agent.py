"""A benchmark agent whose memory is a known blob state, and proves it on every answer.

::

    {"do": "fill", "count": N, "size": S, "seed": K}
        writes N keys "blob:000000".. with deterministic random values of S bytes
        (each write journaled and fsynced before it returns)
    {"do": "check"}
        -> {"pid", "count", "bytes", "digest"}: who answered, and a digest of
           the whole state (every key, every length, and each value's ends)

The digest is computed once per process and cached: the first answer of a
fresh instance (a promoted standby, a respawned main) recomputes it from
that instance's restored memory, which is what a recovery must prove.
:func:`expected_digest` gives the client the same figure without a server.
"""

from __future__ import annotations

import hashlib
import os
import random
from typing import Any

from project_o import Agent

__all__ = ["agent", "blob", "expected_digest"]

agent = Agent("bench-state")

KEY_PREFIX = "blob:"
#: bytes of each value's start and end folded into the digest: enough to
#: tell values apart without hashing 100 MB on every first answer
_EDGE = 32
_cache: dict[str, Any] = {}


def blob(seed: int, index: int, size: int) -> bytes:
    """The value stored under key ``index`` of a fill with ``seed``."""
    return random.Random(seed * 1_000_003 + index).randbytes(size)


def _key(index: int) -> str:
    return f"{KEY_PREFIX}{index:06d}"


def digest_of(items: list[tuple[str, bytes]]) -> dict[str, Any]:
    """Count, total bytes and digest of ``(key, value)`` pairs (sorted by key)."""
    sha = hashlib.sha256()
    total = 0
    for key, value in sorted(items):
        total += len(value)
        sha.update(f"{key}:{len(value)}:".encode())
        sha.update(value[:_EDGE])
        sha.update(value[-_EDGE:])
    return {"count": len(items), "bytes": total, "digest": sha.hexdigest()}


def expected_digest(count: int, size: int, seed: int) -> dict[str, Any]:
    """What ``check`` answers after ``fill`` with these arguments."""
    return digest_of([(_key(i), blob(seed, i, size)) for i in range(count)])


def _fill(ctx: Any, count: int, size: int, seed: int) -> dict[str, Any]:
    for index in range(count):
        ctx.memory.set(_key(index), blob(seed, index, size))
    _cache.clear()
    return {"written": count}


def _check(ctx: Any) -> dict[str, Any]:
    if "state" not in _cache:
        keys = [k for k in ctx.memory.keys() if k.startswith(KEY_PREFIX)]  # noqa: SIM118
        _cache["state"] = digest_of([(k, ctx.memory.get(k)) for k in keys])
    return {"pid": os.getpid(), **_cache["state"]}


@agent.handler
def handle(ctx: Any, request: dict[str, Any]) -> dict[str, Any]:
    """``fill`` or ``check`` (see the module docstring)."""
    if request.get("do") == "fill":
        return _fill(ctx, int(request["count"]), int(request["size"]), int(request["seed"]))
    return _check(ctx)
