"""Finding ``@agent.evolvable`` functions in source text, and putting new ones back.

::

    sources ─► ast.parse ─► defs decorated @agent.evolvable / @agent.evolvable(...)
                             └─► EvolvableFunction(path, qualname, lines start..end, indent)

    splice(text, function, new_def_text)      replaces exactly lines start..end
                                              (decorators included), re-indented

Only the function's own lines are rewritten, so comments and formatting in
the rest of the file survive a mutation (``ast.unparse`` of the whole
module would drop every comment). A function that shares a line with other
code (``def f(): ...; x = 1``) cannot be cut out cleanly and is skipped.

Scans are remembered per content (an LRU of ``_CACHE_SIZE`` genomes):
parsing dominates an operator's cost, and a GA applies many operators to
the same parents.
"""

from __future__ import annotations

import ast
import functools
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass

from project_o.evolution.genome import Genome
from project_o.evolution.operators.params import agent_names

__all__ = [
    "EVOLVABLE_DECORATOR",
    "EvolvableFunction",
    "find_evolvables",
    "function_node",
    "function_nodes",
    "segment",
    "splice",
]

#: the DSL decorator that marks a function mutation may rewrite
EVOLVABLE_DECORATOR = "evolvable"

FunctionNode = ast.FunctionDef | ast.AsyncFunctionDef

#: nodes whose children may be statements (the only place a def can be)
_HOLDS_STATEMENTS = (ast.stmt, ast.excepthandler, ast.match_case)

#: genomes whose scan results are remembered: a GA generation's worth of parents
_CACHE_SIZE = 512


@dataclass(frozen=True)
class EvolvableFunction:
    """Where an evolvable function lives: file, dotted name, and its lines (1-based)."""

    path: str
    qualname: str
    start: int  # first line, decorators included
    end: int  # last line of the body
    indent: str

    @property
    def key(self) -> str:
        """``path:qualname``, the identity used to match functions across genomes."""
        return f"{self.path}:{self.qualname}"


def find_evolvables(genome: Genome | Mapping[str, str]) -> list[EvolvableFunction]:
    """The evolvable functions of a genome, in file then line order."""
    sources = genome.sources if isinstance(genome, Genome) else genome
    return list(_find_cached(tuple(sorted(sources.items()))))


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _find_cached(items: tuple[tuple[str, str], ...]) -> tuple[EvolvableFunction, ...]:
    sources = dict(items)
    receivers = agent_names(sources)
    found: list[EvolvableFunction] = []
    for path, text in items:
        tree = _parse(path, text)
        if tree is None:
            continue
        lines = text.splitlines()
        for qualname, node in _functions(tree):
            if _is_evolvable(node, receivers) and _cuttable(node, lines):
                found.append(_describe(path, qualname, node, lines))
    return tuple(found)


def function_node(text: str, function: EvolvableFunction) -> FunctionNode:
    """A fresh parse of ``function``'s def in ``text`` (safe to mutate in place)."""
    return function_nodes(text, function.path)[function.qualname]


def function_nodes(text: str, path: str = "<agent>") -> dict[str, FunctionNode]:
    """Every def in a fresh parse of ``text``, by dotted name."""
    return dict(_functions(ast.parse(text, path)))


def segment(text: str, function: EvolvableFunction) -> str:
    """The exact source lines of ``function`` (decorators included), dedented."""
    lines = text.splitlines(keepends=True)[function.start - 1:function.end]
    return textwrap.dedent("".join(lines))


def splice(text: str, function: EvolvableFunction, new_def: str) -> str:
    """``text`` with ``function``'s lines replaced by ``new_def`` (dedented source)."""
    lines = text.splitlines(keepends=True)
    body = textwrap.indent(new_def.rstrip("\n") + "\n", function.indent)
    ending = lines[function.end - 1][len(lines[function.end - 1].rstrip("\r\n")):]
    if not ending:
        body = body.rstrip("\n")  # the file had no final newline; keep it that way
    return "".join(lines[:function.start - 1]) + body + "".join(lines[function.end:])


# -- helpers ------------------------------------------------------------


def _parse(path: str, text: str) -> ast.Module | None:
    if not path.endswith(".py"):
        return None
    try:
        return ast.parse(text, path)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def _functions(tree: ast.Module) -> list[tuple[str, FunctionNode]]:
    """Every def in ``tree`` with its dotted name, in source order."""
    found: list[tuple[str, FunctionNode]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    found.append((name, child))
                visit(child, name + ".")
            elif isinstance(child, _HOLDS_STATEMENTS):
                visit(child, prefix)  # defs are statements: expressions never hold one

    visit(tree, "")
    return found


def _is_evolvable(node: FunctionNode, receivers: set[str]) -> bool:
    for decorator in node.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        if isinstance(target, ast.Name) and target.id == EVOLVABLE_DECORATOR:
            return True
        if (isinstance(target, ast.Attribute) and target.attr == EVOLVABLE_DECORATOR
                and isinstance(target.value, ast.Name) and target.value.id in receivers):
            return True
    return False


def _first_line(node: FunctionNode) -> tuple[int, int]:
    """Line and column where the def's text starts (its first decorator's expression)."""
    first = min([node, *node.decorator_list], key=lambda n: n.lineno)
    return first.lineno, first.col_offset


def _cuttable(node: FunctionNode, lines: list[str]) -> bool:
    start, col = _first_line(node)
    end = node.end_lineno or node.lineno
    # Before a decorator's expression there may be only indentation and its "@".
    before = lines[start - 1][:col].strip().removesuffix("@").strip()
    after = lines[end - 1][node.end_col_offset or 0:].strip()
    return not before and (not after or after.startswith("#"))


def _describe(path: str, qualname: str, node: FunctionNode, lines: list[str]) -> EvolvableFunction:
    start, _ = _first_line(node)
    line = lines[start - 1]
    indent = line[:len(line) - len(line.lstrip())]
    return EvolvableFunction(path, qualname, start, node.end_lineno or node.lineno, indent)
