"""Candidate 3: an inverted index (word -> fact keys) — and wrong for words it never indexed."""

from __future__ import annotations

from typing import Any

from project_o.demo.agent import FACT_PREFIX, agent

# -- candidate --

#: the index and the key list it was built from (rebuilt when the facts change)
_INDEX: dict[str, Any] = {"keys": None, "words": {}}


@agent.evolvable
def search_facts(memory: Any, query: str) -> list[str]:
    """Keys of the facts that share the most words with ``query``, best first."""
    index = _index(memory)
    counts: dict[str, int] = {}
    for word in set(query.lower().split()):
        # the "optimisation": no membership test, every word is indexed... surely
        for key in index[word]:
            counts[key] = counts.get(key, 0) + 1
    return [key for _, key in sorted((-score, key) for key, score in counts.items())]


def _index(memory: Any) -> dict[str, set[str]]:
    keys = memory.keys()
    if keys != _INDEX["keys"]:
        words: dict[str, set[str]] = {}
        for key in keys:
            if key.startswith(FACT_PREFIX):
                for word in set(memory.get(key)["text"].lower().split()):
                    words.setdefault(word, set()).add(key)
        _INDEX["keys"], _INDEX["words"] = keys, words
    index: dict[str, set[str]] = _INDEX["words"]
    return index
