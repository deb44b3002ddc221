"""Candidate 1: a divide-and-conquer search with an off-by-one split (it never ends)."""

from __future__ import annotations

from typing import Any

from project_o.demo.agent import FACT_PREFIX, agent

# -- candidate --


@agent.evolvable
def search_facts(memory: Any, query: str) -> list[str]:
    """Keys of the facts that share the most words with ``query``, best first."""
    import sys

    sys.setrecursionlimit(1_000_000)  # "deep memories need deep recursion"
    words = set(query.lower().split())
    keys = [key for key in memory if key.startswith(FACT_PREFIX)]
    return [key for _, key in sorted(_search(memory, words, keys))]


def _search(memory: Any, words: set[str], keys: list[str]) -> list[tuple[int, str]]:
    if len(keys) <= 1:
        return [(-_score(memory, words, key), key) for key in keys
                if _score(memory, words, key)]
    half = len(keys) // 2
    # the bug: the left part keeps the middle key, so two keys split into the same two
    parts = (keys[: half + 1], keys[half:])
    # map() calls back into Python from C: every level also costs C stack, which is
    # what turns this unbounded recursion into a stack overflow rather than an exception
    found = map(lambda part: _search(memory, words, part), parts)  # noqa: C417
    return [hit for hits in found for hit in hits]


def _score(memory: Any, words: set[str], key: str) -> int:
    return len(words & set(memory.get(key)["text"].lower().split()))
