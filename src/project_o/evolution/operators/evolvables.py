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

Scans are remembered per content (:data:`EVOLVABLES`): parsing dominates
an operator's cost, and a GA applies many operators to the same parents.
An operator that rewrote one function body calls :func:`inherit`, so the
child's declarations are the parent's, shifted, instead of a new parse.
"""

from __future__ import annotations

import ast
import functools
import itertools
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass

from project_o.evolution.genome import Genome
from project_o.evolution.operators.content_cache import ContentCache, sources_key
from project_o.evolution.operators.params import AGENT_NAMES, PARAM_SPECS, agent_names

__all__ = [
    "EVOLVABLE_DECORATOR",
    "EvolvableFunction",
    "find_evolvables",
    "inherit",
    "segment",
    "splice",
]

#: the DSL decorator that marks a function mutation may rewrite
EVOLVABLE_DECORATOR = "evolvable"

FunctionNode = ast.FunctionDef | ast.AsyncFunctionDef

#: nodes whose children may be statements (the only place a def can be)
_HOLDS_STATEMENTS = (ast.stmt, ast.excepthandler, ast.match_case)

#: words whose appearance in a rewritten def could change what the file declares
_DECLARING_WORDS = (EVOLVABLE_DECORATOR, "Agent", "param")


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
    return list(EVOLVABLES.get(sources))


def inherit(parent: Mapping[str, str], child: Mapping[str, str], function: EvolvableFunction,
            old_def: str, new_def: str) -> None:
    """Tell the caches that ``child`` is ``parent`` with ``function``'s def rewritten.

    Its evolvable functions are then the parent's with later lines shifted,
    and its agent names and param declarations the parent's, unless the
    rewrite could have changed a declaration (a declaring word appears a
    different number of times, or another evolvable lies inside the def).
    """
    # The three caches key sources alike: each key is worked out once, not per cache.
    parent_key = EVOLVABLES.key(parent)
    functions = EVOLVABLES.peek(parent, key=parent_key)
    if functions is None or any(old_def.count(w) != new_def.count(w) for w in _DECLARING_WORDS):
        return
    moved: list[EvolvableFunction] = []
    end = function.start + new_def.rstrip("\n").count("\n")
    shift = end - function.end
    for f in functions:
        if f.path != function.path or f.start < function.start:
            moved.append(f)
        elif f == function:
            moved.append(_moved(f, f.start, end))
        elif f.start <= function.end:
            return  # another evolvable inside the rewritten def: find them again
        else:
            moved.append(_moved(f, f.start + shift, f.end + shift))
    child_key = EVOLVABLES.key(child)
    EVOLVABLES.put(child, tuple(moved), key=child_key)
    for cache in (AGENT_NAMES, PARAM_SPECS):
        known = cache.peek(parent, key=parent_key)
        if known is not None:
            cache.put(child, known, key=child_key)  # type: ignore[arg-type]


def _moved(function: EvolvableFunction, start: int, end: int) -> EvolvableFunction:
    # The constructor, not dataclasses.replace: this runs for every child bred.
    return EvolvableFunction(function.path, function.qualname, start, end, function.indent)


def _find(sources: Mapping[str, str]) -> tuple[EvolvableFunction, ...]:
    receivers = agent_names(sources)
    found: list[EvolvableFunction] = []
    for path, text in sorted(sources.items()):
        tree = _parse(path, text)
        if tree is None:
            continue
        lines = text.splitlines()
        for qualname, node in _functions(tree):
            if _is_evolvable(node, receivers) and _cuttable(node, lines):
                found.append(_describe(path, qualname, node, lines))
    return tuple(found)


#: the evolvable functions of each genome's sources (see :func:`inherit`)
EVOLVABLES: ContentCache[Mapping[str, str], tuple[EvolvableFunction, ...]] = ContentCache(_find, key=sources_key)


@functools.lru_cache(maxsize=8192)  # every operator on a parent asks again
def segment(text: str, function: EvolvableFunction) -> str:
    """The exact source lines of ``function`` (decorators included), dedented."""
    lines = text.splitlines(keepends=True)[function.start - 1:function.end]
    return textwrap.dedent("".join(lines))


def splice(text: str, function: EvolvableFunction, new_def: str) -> str:
    """``text`` with ``function``'s lines replaced by ``new_def`` (dedented source)."""
    starts = _line_starts(text)
    body = new_def.rstrip("\n") + "\n"
    if function.indent:  # a method or a nested def; most evolvables are top-level
        body = textwrap.indent(body, function.indent)
    last = text[starts[function.end - 1]:starts[function.end]]
    if len(last) == len(last.rstrip("\r\n")):
        body = body.rstrip("\n")  # the file had no final newline; keep it that way
    return text[:starts[function.start - 1]] + body + text[starts[function.end]:]


@functools.lru_cache(maxsize=1024)  # a parent's text, spliced for each of its children
def _line_starts(text: str) -> tuple[int, ...]:
    """Where each line of ``text`` starts (as ``splitlines`` cuts it), and its length."""
    return (0, *itertools.accumulate(len(line) for line in text.splitlines(keepends=True)))


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
