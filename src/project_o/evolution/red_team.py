"""Red team: inputs meant to break the agent, fresh from the task or mutated from seen ones.

::

    task file ── EXAMPLES ──────────────────────────────► seen (inputs worth mutating)
             ├── generate(rng) ──────┐                       │  ▲
             └── strategy() ─ _draw ─┤ fresh (~1/3)          │  │ remember(findings, proposals)
                                     ▼                       ▼  │
                               propose(count) ◄── mutate(choice(seen), rng) (~2/3)
                                     │            text: flip │ insert │ delete │ duplicate │
                                     │                  truncate │ move a span (nasty chars)
                                     │            number: boundary value │ ±1   bool: not
                                     │            list / dict: mutate one item, grow, cut
                                     ▼
                          count distinct inputs (deduplicated by input_key)

Every choice comes from the one ``random.Random`` passed in, hypothesis
draws included: the same seed proposes the same inputs.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Sequence
from typing import Any, Final

__all__ = [
    "MAX_INPUT_CHARS",
    "RedTeam",
    "input_key",
    "mutate",
]

#: inputs longer than this are cut by mutation (keeps findings readable and matches fast)
MAX_INPUT_CHARS: Final = 200
#: values a boundary mutation substitutes for an int (word sizes overflow elsewhere)
_BOUNDARY_INTS: Final = (0, -1, 1, 2**31 - 1, -(2**31), 2**63)
#: ... and for a float (signed zero, the largest and the smallest positive)
_BOUNDARY_FLOATS: Final = (0.0, -0.0, 1e308, -1e308, 5e-324)
#: characters a mutation inserts into text: separators, quotes, controls, non-ASCII
_NASTY_CHARS: Final = "=;\"' \t\n\\\x00é€"


class RedTeam:
    """Proposes inputs: fresh ones from the task, and mutations of inputs seen so far."""

    def __init__(self, task: Any, rng: random.Random) -> None:
        self._task = task
        self._rng = rng
        self.seen: list[Any] = list(getattr(task, "EXAMPLES", []))
        self._strategy = task.strategy() if hasattr(task, "strategy") else None

    def remember(self, inputs: Sequence[Any]) -> None:
        """Inputs worth mutating later (findings first, by calling order)."""
        known = {input_key(x) for x in self.seen}
        self.seen += [x for x in inputs if input_key(x) not in known]

    def propose(self, count: int) -> list[Any]:
        """``count`` distinct inputs: about a third fresh, the rest mutants of seen ones."""
        proposals: dict[str, Any] = {}
        for _ in range(count * 4):
            if len(proposals) >= count:
                break
            fresh = not self.seen or self._rng.random() < 1 / 3
            value = self._fresh() if fresh else mutate(self._rng.choice(self.seen), self._rng)
            proposals.setdefault(input_key(value), value)
        return list(proposals.values())

    def _fresh(self) -> Any:
        if self._strategy is not None and self._rng.random() < 0.5:
            return _draw(self._strategy, self._rng)
        if hasattr(self._task, "generate"):
            return self._task.generate(self._rng)
        return mutate(self._rng.choice(self.seen or [""]), self._rng)


def input_key(value: Any) -> str:
    """Content id of an input: two inputs with equal JSON are one."""
    text = json.dumps(value, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _draw(strategy: Any, rng: random.Random) -> Any:
    """One value of a hypothesis strategy, drawn with ``rng`` (so it is reproducible)."""
    # Hypothesis' public API draws only inside @given; its conjecture data object
    # is the documented-in-source way to draw with a chosen random source.
    from hypothesis.internal.conjecture.data import ConjectureData

    return ConjectureData(random=rng).draw(strategy)


def mutate(value: Any, rng: random.Random) -> Any:
    """A small random change of ``value`` (text, number, list or dict), type kept."""
    if isinstance(value, str):
        return _mutate_text(value, rng)[:MAX_INPUT_CHARS]
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        boundary = _BOUNDARY_INTS if isinstance(value, int) else _BOUNDARY_FLOATS
        return rng.choice(boundary) if rng.random() < 0.5 else value + rng.choice((-1, 1))
    if isinstance(value, list) and value:
        return _mutate_list(value, rng)
    if isinstance(value, dict) and value:
        key = rng.choice(sorted(value, key=str))
        return {**value, key: mutate(value[key], rng)}
    return value


def _mutate_text(text: str, rng: random.Random) -> str:
    if not text:
        return rng.choice(_NASTY_CHARS)
    i = rng.randrange(len(text))
    j = rng.randrange(i, len(text) + 1)
    how = rng.randrange(6)
    if how == 0:  # flip: replace one character with a nasty one
        return text[:i] + rng.choice(_NASTY_CHARS) + text[i + 1:]
    if how == 1:  # insert a nasty character
        return text[:i] + rng.choice(_NASTY_CHARS) + text[i:]
    if how == 2:  # delete a span
        return text[:i] + text[j:]
    if how == 3:  # duplicate a span
        return text[:j] + text[i:j] + text[j:]
    if how == 4:  # truncate
        return text[:i]
    return text[i:j] + text[:i] + text[j:]  # move a span to the front


def _mutate_list(items: list[Any], rng: random.Random) -> list[Any]:
    i = rng.randrange(len(items))
    how = rng.randrange(3)
    if how == 0:
        return items[:i] + [mutate(items[i], rng)] + items[i + 1:]
    if how == 1:
        return items + items[i:i + 1]
    return items[:i]
