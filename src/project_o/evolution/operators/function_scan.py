"""What the AST operators know about one evolvable function, worked out once per text.

::

    genome text, EvolvableFunction ─► segment (the def's lines, dedented) ──┐ LRU key
                                                                           ▼
    FunctionScan   node        a parse of the segment: read it, never change it
                   sites(...)  an operator's mutation sites, listed once per operator
                   normalized  ast.unparse(node): what "unchanged" looks like
                   pieces      portable expressions and statements, for donors
                   span(node)  (start, end) character offsets of a node in the segment

A genetic algorithm applies thousands of operators to a few hundred parents,
and most of an operator's cost used to be parsing and walking the same text
again. A scan is shared by every operator and every child of a parent, so
its tree must stay untouched: an operator that rewrites a tree parses the
segment afresh (:meth:`FunctionScan.fresh`).

Offsets: ``ast`` gives columns in UTF-8 bytes; :meth:`FunctionScan.offset`
turns them into indices of the ``str``, so non-ASCII code is cut correctly.
"""

from __future__ import annotations

import ast
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from project_o.evolution.operators.content_cache import ContentCache
from project_o.evolution.operators.evolvables import EvolvableFunction, FunctionNode, segment

__all__ = ["SCAN_CACHE_SIZE", "FunctionScan", "scan", "walk"]

#: distinct function texts remembered: a few generations of a population of 300
SCAN_CACHE_SIZE: Final = 4096


@dataclass
class FunctionScan:
    """One evolvable function's text and everything derived from it (see the module doc)."""

    text: str
    node: FunctionNode
    _line_starts: list[int]
    _sites: dict[str, list[Any]] = field(default_factory=dict)
    _normalized: str | None = None
    #: whether offsets of nodes inside f-strings can be trusted: not before 3.12
    has_fstring: bool = False
    #: columns are byte offsets; in ASCII text they are character offsets too
    ascii: bool = True

    @classmethod
    def of(cls, text: str) -> FunctionScan:
        """Scan a dedented def (decorators included); raises SyntaxError if it is not one."""
        node = _only_def(ast.parse(text))
        starts = [0, *itertools.accumulate(len(line) for line in text.splitlines(keepends=True))]
        # Only text with an f-prefixed quote can hold an f-string: skip the walk otherwise.
        has_fstring = _maybe_fstring(text) and any(isinstance(n, ast.JoinedStr)
                                                   for n in walk(node))
        return cls(text, node, starts, has_fstring=has_fstring, ascii=text.isascii())

    def fresh(self) -> FunctionNode:
        """A new parse of the text, safe to change in place."""
        return _only_def(ast.parse(self.text))

    def sites(self, key: str, finder: Callable[[FunctionNode], list[Any]]) -> list[Any]:
        """``finder(node)``, computed once per ``key`` (an operator's name)."""
        found = self._sites.get(key)
        if found is None:
            found = self._sites[key] = finder(self.node)
        return found

    @property
    def normalized(self) -> str:
        """``ast.unparse`` of the def: a rewrite that prints the same changed nothing."""
        if self._normalized is None:
            self._normalized = ast.unparse(self.node)
        return self._normalized

    def offset(self, lineno: int, col: int) -> int:
        """The ``str`` index of (1-based line, UTF-8 byte column)."""
        start = self._line_starts[lineno - 1]
        if col and not self.ascii:
            line = self.text[start:self._line_starts[lineno]]
            col = len(line.encode()[:col].decode(errors="replace"))
        return start + col

    def span(self, node: ast.AST) -> tuple[int, int]:
        """``(start, end)`` of ``node`` in :attr:`text` (parentheses around it excluded)."""
        located: Any = node
        return (self.offset(located.lineno, located.col_offset),
                self.offset(located.end_lineno, located.end_col_offset))

    def source(self, node: ast.AST) -> str:
        """The exact text of ``node``."""
        start, end = self.span(node)
        return self.text[start:end]

    def replace(self, spans: Sequence[tuple[int, int, str]]) -> str:
        """The text with each ``(start, end, new)`` span replaced (spans must not overlap)."""
        out, at = [], 0
        for start, end, new in sorted(spans):
            out += [self.text[at:start], new]
            at = end
        return "".join([*out, self.text[at:]])


def walk(root: ast.AST) -> list[ast.AST]:
    """``list(ast.walk(root))``, in the same (breadth-first) order, without generators.

    Operators list the sites of every new function text; walking with
    ``ast.walk`` and ``ast.iter_fields`` was a fifth of breeding's time.
    """
    nodes = [root]
    append, node_type = nodes.append, ast.AST
    for node in nodes:  # grows while it is read: each node's children join the end
        for name in node._fields:
            value = getattr(node, name, None)
            if value.__class__ is list:  # the fields of AST nodes hold plain lists
                for item in value:
                    if isinstance(item, node_type):
                        append(item)
            elif isinstance(value, node_type):
                append(value)
    return nodes


def _maybe_fstring(text: str) -> bool:
    lowered = text.lower()
    return "f'" in lowered or 'f"' in lowered


def scan(text: str, function: EvolvableFunction) -> FunctionScan:
    """The scan of ``function`` in the file ``text`` (shared: never change its tree)."""
    return _SCANS.get(segment(text, function))


def _only_def(tree: ast.Module) -> FunctionNode:
    [node] = tree.body
    if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        # The text is not a def: for the caller, as good as unparsable.
        raise SyntaxError(f"expected one def, found {type(node).__name__}")  # noqa: TRY004
    return node


#: scans by the def's text
_SCANS: ContentCache[str, FunctionScan] = ContentCache(FunctionScan.of, size=SCAN_CACHE_SIZE,
                                                       key=str)
