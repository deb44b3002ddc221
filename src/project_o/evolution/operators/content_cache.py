"""Remembering what was read from source text, by content.

::

    argument ──key──► hashable content key ──► LRU ──► value
      sources {path: text}: the sorted (path, text) pairs (key=sources_key)
      one def's text: the text itself (key=str)
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
from collections.abc import Callable, Hashable, Mapping
from typing import Final, Generic, TypeVar

__all__ = ["DEFAULT_SIZE", "ContentCache", "sources_key"]

#: entries kept: more than a generation of a 300-genome population
DEFAULT_SIZE: Final = 4096

A = TypeVar("A")
V = TypeVar("V")


def sources_key(sources: Mapping[str, str]) -> Hashable:
    """The content of a genome's sources, independent of their order.

    One file is the (path, text) pair itself, several the sorted pairs: the
    two shapes never compare equal, and most agents are one file.
    """
    if len(sources) == 1:
        [item] = sources.items()
        return item
    return tuple(sorted(sources.items()))


class ContentCache(Generic[A, V]):
    """``compute(argument)``, remembered for the last ``size`` distinct contents."""

    def __init__(self, compute: Callable[[A], V], *, key: Callable[[A], Hashable],
                 size: int = DEFAULT_SIZE) -> None:
        self._compute, self._size, self._key = compute, size, key
        self._entries: OrderedDict[Hashable, V] = OrderedDict()

    def get(self, argument: A) -> V:
        """The value for ``argument``, computed on a miss."""
        key = self._key(argument)
        if key in self._entries:
            self._entries.move_to_end(key)
            return self._entries[key]
        value = self._compute(argument)
        self._remember(key, value)
        return value

    def key(self, argument: A) -> Hashable:
        """The content key of ``argument`` (for :meth:`peek` and :meth:`put` by key)."""
        return self._key(argument)

    def peek(self, argument: A, *, key: Hashable | None = None) -> V | None:
        """The value if it is remembered, else None (nothing is computed).

        ``key``: :meth:`key` of ``argument``, when the caller has it already.
        """
        return self._entries.get(self._key(argument) if key is None else key)

    def put(self, argument: A, value: V, *, key: Hashable | None = None) -> None:
        """Remember ``value`` as what ``compute(argument)`` would return (``key``: as peek)."""
        self._remember(self._key(argument) if key is None else key, value)

    def _remember(self, key: Hashable, value: V) -> None:
        self._entries[key] = value
        self._entries.move_to_end(key)
        if len(self._entries) > self._size:
            self._entries.popitem(last=False)

