"""Offline code mutation: small syntactic changes to ``@agent.evolvable`` functions.

Each operator works the same way::

    parent ─► evolvable functions ─► every site, in every function (a deterministic list)
                                          │ rng picks one
                                          ▼
          fresh parse of that function ─► mutate the site in place ─► ast.unparse(def)
                                          │
          splice into the file (other lines untouched) ─► compile() ─► child
                      └── no-op, or does not compile: pick another site (MAX_ATTEMPTS)

    mut_ast_constant   ints ±1; floats × (1 + N(0, 0.1²)) or + N(0, 0.1²·max(|x|, 1)²)
    mut_ast_operator   + ↔ -, * ↔ /, // ↔ %, < ↔ <=, > ↔ >=, == ↔ !=, is ↔ is not,
                       in ↔ not in, and ↔ or, & ↔ |, << ↔ >>, unary + ↔ -
    mut_ast_delete     drop a statement from a body that keeps at least one
    mut_ast_duplicate  repeat a statement right after itself
    mut_ast_reorder    swap two neighbouring statements
    mut_ast_donor      replace an expression or a statement with one taken from an
                       evolvable function of a donor genome (the parent's other
                       evolvable functions when no donor is given)

Every child compiles; none is guaranteed to run — that is what shadows and
evaluators are for. Docstrings are never touched.
"""

from __future__ import annotations

import ast
import copy
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from project_o.evolution.genome import Genome
from project_o.evolution.operators.base import NoChild, OperatorBase, syntax_problem
from project_o.evolution.operators.evolvables import (
    EvolvableFunction,
    FunctionNode,
    find_evolvables,
    function_node,
    function_nodes,
    splice,
)

__all__ = [
    "AST_OPERATORS",
    "MAX_ATTEMPTS",
    "ConstantPerturbation",
    "DonorSubtree",
    "OperatorSwap",
    "StatementDeletion",
    "StatementDuplication",
    "StatementReorder",
]

#: sites tried before giving up; most sites give valid code, so a handful suffices
MAX_ATTEMPTS = 8

#: relative size of a float constant's step (10%: a nudge, not a rewrite)
FLOAT_SIGMA = 0.1

#: significant digits kept for a mutated float, so diffs stay readable
_FLOAT_DIGITS = 6

_SWAPS: dict[type[ast.AST], type[ast.AST]] = {}
for _a, _b in [
    (ast.Add, ast.Sub), (ast.Mult, ast.Div), (ast.FloorDiv, ast.Mod), (ast.Lt, ast.LtE),
    (ast.Gt, ast.GtE), (ast.Eq, ast.NotEq), (ast.Is, ast.IsNot), (ast.In, ast.NotIn),
    (ast.And, ast.Or), (ast.BitAnd, ast.BitOr), (ast.LShift, ast.RShift), (ast.UAdd, ast.USub),
]:
    _SWAPS[_a], _SWAPS[_b] = _b, _a

#: statements whose copy right after them would never run
_TERMINATORS = (ast.Return, ast.Raise, ast.Continue, ast.Break, ast.Pass)

#: expressions that are only valid in special places (slices, f-string parts, *args)
_NOT_PORTABLE = (ast.Slice, ast.Starred, ast.FormattedValue, ast.JoinedStr)


@dataclass(frozen=True)
class _Slot:
    """A place in the tree: ``getattr(owner, field)[index]``, or the field itself."""

    owner: ast.AST
    field: str
    index: int | None = None

    def get(self) -> Any:
        value = getattr(self.owner, self.field)
        return value if self.index is None else value[self.index]

    def set(self, new: Any) -> None:
        if self.index is None:
            setattr(self.owner, self.field, new)
        else:
            getattr(self.owner, self.field)[self.index] = new


class _AstMutation(OperatorBase):
    """Template: list sites, pick one, mutate a fresh parse of its function, check, splice."""

    def _propose(self, parent: Genome, rng: random.Random, donors: Sequence[Genome]) -> Genome:
        functions = find_evolvables(parent)
        if not functions:
            raise NoChild("the agent has no @agent.evolvable function to mutate")
        sites = [(fn, k) for fn, count in self._counts(parent, functions)
                 for k in range(count)]
        if not sites:
            raise NoChild(f"no site for this mutation in {len(functions)} evolvable function(s)")
        for _ in range(MAX_ATTEMPTS):
            fn, k = sites[rng.randrange(len(sites))]
            child = self._attempt(parent, fn, k, rng, donors)
            if child is not None:
                return child
        raise NoChild(f"no attempt out of {MAX_ATTEMPTS} gave a changed, compiling function")

    def _counts(self, parent: Genome, functions: list[EvolvableFunction],
                ) -> list[tuple[EvolvableFunction, int]]:
        """Sites per function, parsing each file once."""
        nodes = {path: function_nodes(parent.sources[path], path)
                 for path in {fn.path for fn in functions}}
        return [(fn, len(self._sites(nodes[fn.path][fn.qualname]))) for fn in functions]

    def _attempt(self, parent: Genome, fn: EvolvableFunction, k: int, rng: random.Random,
                 donors: Sequence[Genome]) -> Genome | None:
        text = parent.sources[fn.path]
        node = function_node(text, fn)
        before = ast.unparse(node)
        outcome = self._mutate(node, self._sites(node)[k], rng, parent, fn, donors)
        if outcome is None:
            return None
        details, used = outcome
        ast.fix_missing_locations(node)
        try:
            after = ast.unparse(node)
        except (ValueError, TypeError, AttributeError, RecursionError):
            return None  # a tree unparse cannot print is not code
        if after == before:
            return None
        new_text = splice(text, fn, after)
        if syntax_problem({fn.path: new_text}) is not None:
            return None
        details = {"function": fn.key, **details}
        return parent.derive(operator=self.name, sources={**parent.sources, fn.path: new_text},
                             donors=used, details=details)

    def _sites(self, node: FunctionNode) -> list[Any]:
        raise NotImplementedError

    def _mutate(self, node: FunctionNode, site: Any, rng: random.Random, parent: Genome,
                fn: EvolvableFunction, donors: Sequence[Genome],
                ) -> tuple[dict[str, Any], Sequence[Genome]] | None:
        """Change ``site`` in place; return (details, donor genomes used) or None to skip."""
        raise NotImplementedError


class ConstantPerturbation(_AstMutation):
    """Nudge a numeric literal: ints by ±1, floats by a small relative step."""

    name: ClassVar[str] = "mut_ast_constant"

    def _sites(self, node: FunctionNode) -> list[ast.Constant]:
        return [n for n in _body_nodes(node) if isinstance(n, ast.Constant)
                and isinstance(n.value, int | float) and not isinstance(n.value, bool)]

    def _mutate(self, node: FunctionNode, site: ast.Constant, rng: random.Random, *_: Any,
                ) -> tuple[dict[str, Any], Sequence[Genome]]:
        old: Any = site.value  # an int or float: _sites() only yields those
        if isinstance(old, int):
            new: float = old + rng.choice((-1, 1))
        elif rng.random() < 0.5 and old != 0:
            new = _round(old * (1.0 + rng.gauss(0.0, FLOAT_SIGMA)))
        else:
            new = _round(old + rng.gauss(0.0, FLOAT_SIGMA * max(abs(old), 1.0)))
        site.value = new
        return {"line": site.lineno, "change": f"{old!r} -> {new!r}"}, ()


class OperatorSwap(_AstMutation):
    """Swap an operator for its partner (``+`` ↔ ``-``, ``<`` ↔ ``<=``, ``and`` ↔ ``or``...)."""

    name: ClassVar[str] = "mut_ast_operator"

    def _sites(self, node: FunctionNode) -> list[tuple[ast.AST, int | None]]:
        sites: list[tuple[ast.AST, int | None]] = []
        for n in _body_nodes(node):
            if isinstance(n, ast.BinOp | ast.AugAssign | ast.BoolOp | ast.UnaryOp):
                if type(n.op) in _SWAPS:
                    sites.append((n, None))
            elif isinstance(n, ast.Compare):
                sites += [(n, i) for i, op in enumerate(n.ops) if type(op) in _SWAPS]
        return sites

    def _mutate(self, node: FunctionNode, site: tuple[Any, int | None], rng: random.Random,
                *_: Any) -> tuple[dict[str, Any], Sequence[Genome]]:
        owner, index = site
        old = owner.op if index is None else owner.ops[index]
        new = _SWAPS[type(old)]()
        if index is None:
            owner.op = new
        else:
            owner.ops[index] = new
        change = f"{type(old).__name__} -> {type(new).__name__}"
        return {"line": owner.lineno, "change": change}, ()


class StatementDeletion(_AstMutation):
    """Delete one statement from a body of two or more (never the docstring)."""

    name: ClassVar[str] = "mut_ast_delete"

    def _sites(self, node: FunctionNode) -> list[_Slot]:
        return [s for s in _statement_slots(node) if len(getattr(s.owner, s.field)) >= 2]

    def _mutate(self, node: FunctionNode, site: _Slot, *_: Any,
                ) -> tuple[dict[str, Any], Sequence[Genome]]:
        assert site.index is not None  # statement slots are list items
        removed = getattr(site.owner, site.field).pop(site.index)
        return {"line": removed.lineno, "change": f"deleted {_brief(removed)}"}, ()


class StatementDuplication(_AstMutation):
    """Repeat one statement right after itself (not returns, raises, breaks...)."""

    name: ClassVar[str] = "mut_ast_duplicate"

    def _sites(self, node: FunctionNode) -> list[_Slot]:
        return [s for s in _statement_slots(node) if not isinstance(s.get(), _TERMINATORS)]

    def _mutate(self, node: FunctionNode, site: _Slot, *_: Any,
                ) -> tuple[dict[str, Any], Sequence[Genome]]:
        assert site.index is not None  # statement slots are list items
        statement = site.get()
        getattr(site.owner, site.field).insert(site.index + 1, copy.deepcopy(statement))
        return {"line": statement.lineno, "change": f"duplicated {_brief(statement)}"}, ()


class StatementReorder(_AstMutation):
    """Swap a statement with the one after it in the same body."""

    name: ClassVar[str] = "mut_ast_reorder"

    def _sites(self, node: FunctionNode) -> list[_Slot]:
        return [s for s in _statement_slots(node)
                if s.index is not None and s.index + 1 < len(getattr(s.owner, s.field))]

    def _mutate(self, node: FunctionNode, site: _Slot, *_: Any,
                ) -> tuple[dict[str, Any], Sequence[Genome]]:
        body, i = getattr(site.owner, site.field), site.index
        assert i is not None  # statement slots are list items
        first, second = body[i], body[i + 1]
        body[i], body[i + 1] = second, first
        return {"line": first.lineno,
                "change": f"swapped lines {first.lineno} and {second.lineno}"}, ()


class DonorSubtree(_AstMutation):
    """Replace an expression or statement with a copy of one from a donor's evolvable function."""

    name: ClassVar[str] = "mut_ast_donor"

    def _sites(self, node: FunctionNode) -> list[_Slot]:
        return _expression_slots(node) + _statement_slots(node)

    def _mutate(self, node: FunctionNode, site: _Slot, rng: random.Random, parent: Genome,
                fn: EvolvableFunction, donors: Sequence[Genome],
                ) -> tuple[dict[str, Any], Sequence[Genome]] | None:
        want = ast.stmt if isinstance(site.get(), ast.stmt) else ast.expr
        material = [(g, f, piece) for g, f, piece in _donor_material(parent, fn, donors)
                    if isinstance(piece, want)]
        if not material:
            return None
        donor, donor_fn, piece = material[rng.randrange(len(material))]
        old = site.get()
        site.set(copy.deepcopy(piece))
        details = {"line": getattr(old, "lineno", fn.start), "donor": donor.id,
                   "donor_function": donor_fn.key,
                   "change": f"{_brief(old)} -> {_brief(piece)}"}
        return details, ([donor] if donor.id != parent.id else [])

    def _propose(self, parent: Genome, rng: random.Random, donors: Sequence[Genome]) -> Genome:
        if not donors and len(find_evolvables(parent)) == 1:
            raise NoChild("no donor evolvable function to take code from; pass donors")
        return super()._propose(parent, rng, donors)


#: the AST operator classes, in a stable order (default_operators() makes one of each)
AST_OPERATORS: tuple[type[_AstMutation], ...] = (
    ConstantPerturbation, OperatorSwap, StatementDeletion, StatementDuplication,
    StatementReorder, DonorSubtree,
)


# -- tree helpers -------------------------------------------------------


def _body_nodes(node: FunctionNode) -> Iterator[ast.AST]:
    """Nodes of the body and argument defaults; not decorators, annotations or docstring."""
    roots: list[ast.AST] = [*node.args.defaults, *(d for d in node.args.kw_defaults if d)]
    roots += node.body[1:] if _docstring(node.body) else node.body
    for root in roots:
        yield from ast.walk(root)


def _docstring(body: list[ast.stmt]) -> bool:
    first = body[0] if body else None
    return isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
        and isinstance(first.value.value, str)


def _statement_slots(node: FunctionNode) -> list[_Slot]:
    """Every statement in every body inside the function (the function's docstring excluded)."""
    slots: list[_Slot] = []
    for owner in ast.walk(node):
        for field, value in ast.iter_fields(owner):
            if not (isinstance(value, list) and value and isinstance(value[0], ast.stmt)):
                continue
            skip = 1 if owner is node and field == "body" and _docstring(value) else 0
            slots += [_Slot(owner, field, i) for i in range(skip, len(value))]
    return slots


def _expression_slots(node: FunctionNode) -> list[_Slot]:
    """Expressions that are read (not assigned to) and can stand anywhere an expression can."""
    slots: list[_Slot] = []
    for owner in _body_nodes(node):
        if isinstance(owner, ast.JoinedStr):
            continue  # its parts must stay string pieces
        for field, value in ast.iter_fields(owner):
            items = value if isinstance(value, list) else [value]
            for i, item in enumerate(items):
                if _portable(item):
                    slots.append(_Slot(owner, field, i if isinstance(value, list) else None))
    return slots


def _portable(node: object) -> bool:
    return isinstance(node, ast.expr) and not isinstance(node, _NOT_PORTABLE) \
        and isinstance(getattr(node, "ctx", ast.Load()), ast.Load)


_Piece = tuple[Genome, EvolvableFunction, ast.AST]


def _donor_material(parent: Genome, target: EvolvableFunction | None,
                    donors: Sequence[Genome]) -> Iterator[_Piece]:
    """(genome, function, piece) for each portable expression and statement of the donors."""
    pool = list(donors) or [parent]
    for genome in pool:
        for fn in find_evolvables(genome):
            if genome.id == parent.id and target is not None and fn.key == target.key:
                continue  # a function is not its own donor
            node = function_node(genome.sources[fn.path], fn)
            for slot in _expression_slots(node) + _statement_slots(node):
                yield genome, fn, slot.get()


def _brief(node: ast.AST, limit: int = 60) -> str:
    try:
        text = ast.unparse(node).splitlines()[0]
    except (ValueError, TypeError, AttributeError, IndexError):
        text = type(node).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _round(value: float) -> float:
    return float(f"{value:.{_FLOAT_DIGITS}g}")
