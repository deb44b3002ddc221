"""Remembering what was read from a genome's sources, by content.

::

    sources {path: text} ──key──► (sorted (path, text) pairs) ──► LRU ──► value
                                                                  ▲
    an operator that knows a child's value already (the parent's,  │
    shifted by a splice) puts it ─────────────────────────────────┘

Reading declarations means parsing and walking whole files; a genetic
algorithm asks the same questions of the same few hundred parents many
times, and of each child once it is picked as a parent. ``put`` lets an
operator hand the answer over instead of having it recomputed.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Final, Generic, TypeVar

__all__ = ["DEFAULT_SIZE", "ContentCache"]

#: entries kept: more than a generation of a 300-genome population
DEFAULT_SIZE: Final = 4096

V = TypeVar("V")
_Key = tuple[tuple[str, str], ...]


class ContentCache(Generic[V]):
    """``compute(sources)``, remembered for the last ``size`` distinct contents."""

    def __init__(self, compute: Callable[[Mapping[str, str]], V],
                 size: int = DEFAULT_SIZE) -> None:
        self._compute, self._size = compute, size
        self._entries: OrderedDict[_Key, V] = OrderedDict()

    def get(self, sources: Mapping[str, str]) -> V:
        """The value for ``sources``, computed on a miss."""
        key = _key(sources)
        if key in self._entries:
            self._entries.move_to_end(key)
            return self._entries[key]
        value = self._compute(dict(key))
        self._remember(key, value)
        return value

    def peek(self, sources: Mapping[str, str]) -> V | None:
        """The value if it is remembered, else None (nothing is computed)."""
        return self._entries.get(_key(sources))

    def put(self, sources: Mapping[str, str], value: V) -> None:
        """Remember ``value`` as what ``compute(sources)`` would return."""
        self._remember(_key(sources), value)

    def _remember(self, key: _Key, value: V) -> None:
        self._entries[key] = value
        self._entries.move_to_end(key)
        if len(self._entries) > self._size:
            self._entries.popitem(last=False)


def _key(sources: Mapping[str, str]) -> _Key:
    return tuple(sorted(sources.items()))
