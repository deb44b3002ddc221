"""Offline code mutation: small syntactic changes to ``@agent.evolvable`` functions.

Each operator works the same way::

    parent ─► evolvable functions ─► scan of each (function_scan: parsed once per text)
                                          │ every site, in every function (a deterministic
                                          │ list, cached per operator); rng picks one
                                          ▼
          text edit: replace the site's characters        (constants, operators of equal
                     (formatting and comments kept)        precedence, donor expressions)
          or rewrite: fresh parse ─► change the tree ─► ast.unparse(def)      (the rest)
                                          │
          compile(new def) ─► splice into the file (other lines untouched) ─► child
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

A text edit is used only where it means exactly what the tree change
would: an operator swapped for one of the same precedence, an expression
put in parentheses unless precedence makes them unnecessary. Anything
else (and any function holding an f-string, whose inner positions Python
3.11 reports unreliably) takes the rewrite. Both draw the same random
numbers for the same site, so a seed decides the child either way.

Every child compiles; none is guaranteed to run — that is what shadows and
evaluators are for. Docstrings are never touched.
"""

from __future__ import annotations

import ast
import copy
import functools
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

from project_o.evolution.genome import Genome
from project_o.evolution.operators.base import NoChild, OperatorBase, syntax_problem
from project_o.evolution.operators.evolvables import (
    EvolvableFunction,
    FunctionNode,
    find_evolvables,
    inherit,
    splice,
)
from project_o.evolution.operators.function_scan import (
    SCAN_CACHE_SIZE,
    FunctionScan,
    scan,
    walk,
)
from project_o.evolution.operators.source_text import (
    TOKENS,
    fitted,
    operator_span,
    touches_a_word,
    valid_anywhere,
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

#: nodes whose children may be statements
_HOLDS_STATEMENTS = (ast.stmt, ast.excepthandler, ast.match_case)

#: expressions that are only valid in special places (slices, f-string parts, *args)
_NOT_PORTABLE = (ast.Slice, ast.Starred, ast.FormattedValue, ast.JoinedStr)

#: what an expression without a ``ctx`` counts as: read
_LOAD = ast.Load()


@dataclass(slots=True)
class _Slot:
    """A place in the tree: ``getattr(owner, field)[index]``, or the field itself.

    Not frozen (treat it as if it were): operators list one per expression
    of every new function text, and a frozen dataclass is slow to build.
    """

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


class _Fallback:
    """Returned by :meth:`_AstMutation._edit` when only a tree rewrite is exact."""


_FALLBACK = _Fallback()

class _Edit(NamedTuple):
    """A new def text, the details for the lineage, and the donor genomes used."""

    text: str
    details: dict[str, Any]
    used: Sequence[Genome]
    #: valid syntax by construction (a number for a number, an operator for its
    #: partner, a plain expression in parentheses): no need to compile it to know
    well_formed: bool = False


class _AstMutation(OperatorBase):
    """Template: list sites, pick one, edit its text or rewrite its tree, check, splice."""

    def _propose(self, parent: Genome, rng: random.Random, donors: Sequence[Genome]) -> Genome:
        functions = find_evolvables(parent)
        if not functions:
            raise NoChild("the agent has no @agent.evolvable function to mutate")
        # Sites are numbered function by function; a draw picks one by its number.
        scans = [(fn, scan(parent.sources[fn.path], fn)) for fn in functions]
        counts = [len(found.sites(self.name, self._sites)) for _, found in scans]
        total = sum(counts)
        if not total:
            raise NoChild(f"no site for this mutation in {len(functions)} evolvable function(s)")
        for _ in range(MAX_ATTEMPTS):
            k = rng.randrange(total)
            which = 0
            while k >= counts[which]:
                k -= counts[which]
                which += 1
            fn, found = scans[which]
            child = self._attempt(parent, fn, found, k, rng, donors)
            if child is not None:
                return child
        raise NoChild(f"no attempt out of {MAX_ATTEMPTS} gave a changed, compiling function")

    def _attempt(self, parent: Genome, fn: EvolvableFunction, found: FunctionScan, k: int,
                 rng: random.Random, donors: Sequence[Genome]) -> Genome | None:
        site = found.sites(self.name, self._sites)[k]
        edit = _FALLBACK if found.has_fstring else self._edit(found, site, rng, parent, fn,
                                                              donors)
        if isinstance(edit, _Fallback):
            edit = self._rewrite(found, k, rng, parent, fn, donors)
        if edit is None:
            return None
        new_def, details, used, well_formed = edit
        if new_def == found.text:
            return None
        if not well_formed and syntax_problem({fn.path: new_def}) is not None:
            return None
        sources = {**parent.sources, fn.path: splice(parent.sources[fn.path], fn, new_def)}
        inherit(parent.sources, sources, fn, found.text, new_def)
        return parent.derive(operator=self.name, sources=sources, donors=used,
                             details={"function": fn.key, **details})

    def _rewrite(self, found: FunctionScan, k: int, rng: random.Random, parent: Genome,
                 fn: EvolvableFunction, donors: Sequence[Genome]) -> _Edit | None:
        """Change site ``k`` of a fresh tree and print the def again."""
        node = found.fresh()
        outcome = self._mutate(node, self._sites(node)[k], rng, parent, fn, donors)
        if outcome is None:
            return None
        return _unparsed(node, found, *outcome)

    def _sites(self, node: FunctionNode) -> list[Any]:
        raise NotImplementedError

    def _edit(self, found: FunctionScan, site: Any, rng: random.Random, parent: Genome,
              fn: EvolvableFunction, donors: Sequence[Genome]) -> _Edit | None | _Fallback:
        """The child's def by editing text at ``site`` (of the shared, unchanged tree).

        Must draw from ``rng`` exactly as :meth:`_mutate` would. The default
        defers to the rewrite.
        """
        return _FALLBACK

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

    def _edit(self, found: FunctionScan, site: ast.Constant, rng: random.Random,
              parent: Genome, fn: EvolvableFunction, donors: Sequence[Genome]) -> _Edit:
        old: Any = site.value  # an int or float: _sites() only yields those
        new = _nudged(old, rng)
        literal = ast.unparse(ast.Constant(new))
        literal = f"({literal})" if literal.startswith("-") else literal
        start, end = found.span(site)
        return _Edit(found.replace([(start, end, literal)]),
                     {"line": _line(fn, site), "change": f"{site.value!r} -> {new!r}"}, (),
                     well_formed=True)

    def _mutate(self, node: FunctionNode, site: ast.Constant, rng: random.Random,
                parent: Genome, fn: EvolvableFunction, *_: Any,
                ) -> tuple[dict[str, Any], Sequence[Genome]]:
        old: Any = site.value  # an int or float: _sites() only yields those
        site.value = _nudged(old, rng)
        return {"line": _line(fn, site), "change": f"{old!r} -> {site.value!r}"}, ()


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

    def _edit(self, found: FunctionScan, site: tuple[Any, int | None], rng: random.Random,
              parent: Genome, fn: EvolvableFunction, donors: Sequence[Genome],
              ) -> _Edit | _Fallback:
        owner, index = site
        old = owner.op if index is None else owner.ops[index]
        where = operator_span(found, owner, index)
        if where is None:
            return _FALLBACK
        new = _SWAPS[type(old)]
        token = TOKENS[new] + ("=" if isinstance(owner, ast.AugAssign) else "")
        return _Edit(found.replace([(*where, token)]),
                     {"line": _line(fn, owner), "change": f"{type(old).__name__} -> "
                      f"{new.__name__}"}, (), well_formed=True)

    def _mutate(self, node: FunctionNode, site: tuple[Any, int | None], rng: random.Random,
                parent: Genome, fn: EvolvableFunction, *_: Any,
                ) -> tuple[dict[str, Any], Sequence[Genome]]:
        owner, index = site
        old = owner.op if index is None else owner.ops[index]
        new = _SWAPS[type(old)]()
        if index is None:
            owner.op = new
        else:
            owner.ops[index] = new
        change = f"{type(old).__name__} -> {type(new).__name__}"
        return {"line": _line(fn, owner), "change": change}, ()


class StatementDeletion(_AstMutation):
    """Delete one statement from a body of two or more (the docstring neither counts nor goes).

    A function whose only statement went would be left with its docstring:
    it returns None, and its evaluation would be wasted.
    """

    name: ClassVar[str] = "mut_ast_delete"

    def _sites(self, node: FunctionNode) -> list[_Slot]:
        counts = Counter((id(s.owner), s.field) for s in _statement_slots(node))
        return [s for s in _statement_slots(node) if counts[id(s.owner), s.field] >= 2]

    def _mutate(self, node: FunctionNode, site: _Slot, rng: random.Random, parent: Genome,
                fn: EvolvableFunction, *_: Any) -> tuple[dict[str, Any], Sequence[Genome]]:
        assert site.index is not None  # statement slots are list items
        removed = getattr(site.owner, site.field).pop(site.index)
        return {"line": _line(fn, removed), "change": f"deleted {_brief(removed)}"}, ()


class StatementDuplication(_AstMutation):
    """Repeat one statement right after itself (not returns, raises, breaks...)."""

    name: ClassVar[str] = "mut_ast_duplicate"

    def _sites(self, node: FunctionNode) -> list[_Slot]:
        return [s for s in _statement_slots(node) if not isinstance(s.get(), _TERMINATORS)]

    def _mutate(self, node: FunctionNode, site: _Slot, rng: random.Random, parent: Genome,
                fn: EvolvableFunction, *_: Any) -> tuple[dict[str, Any], Sequence[Genome]]:
        assert site.index is not None  # statement slots are list items
        statement = site.get()
        getattr(site.owner, site.field).insert(site.index + 1, copy.deepcopy(statement))
        return {"line": _line(fn, statement), "change": f"duplicated {_brief(statement)}"}, ()


class StatementReorder(_AstMutation):
    """Swap a statement with the one after it in the same body."""

    name: ClassVar[str] = "mut_ast_reorder"

    def _sites(self, node: FunctionNode) -> list[_Slot]:
        return [s for s in _statement_slots(node)
                if s.index is not None and s.index + 1 < len(getattr(s.owner, s.field))]

    def _mutate(self, node: FunctionNode, site: _Slot, rng: random.Random, parent: Genome,
                fn: EvolvableFunction, *_: Any) -> tuple[dict[str, Any], Sequence[Genome]]:
        body, i = getattr(site.owner, site.field), site.index
        assert i is not None  # statement slots are list items
        first, second = body[i], body[i + 1]
        body[i], body[i + 1] = second, first
        lines = _line(fn, first), _line(fn, second)
        return {"line": lines[0], "change": f"swapped lines {lines[0]} and {lines[1]}"}, ()


class DonorSubtree(_AstMutation):
    """Replace an expression or statement with a copy of one from a donor's evolvable function."""

    name: ClassVar[str] = "mut_ast_donor"

    def _sites(self, node: FunctionNode) -> list[_Slot]:
        return _donor_slots(node)

    def _propose(self, parent: Genome, rng: random.Random, donors: Sequence[Genome]) -> Genome:
        if not donors and len(find_evolvables(parent)) == 1:
            raise NoChild("no donor evolvable function to take code from; pass donors")
        return super()._propose(parent, rng, donors)

    def _edit(self, found: FunctionScan, site: _Slot, rng: random.Random, parent: Genome,
              fn: EvolvableFunction, donors: Sequence[Genome]) -> _Edit | None | _Fallback:
        old = site.get()
        if isinstance(old, ast.GeneratorExp) or getattr(old, "decorator_list", None):
            return _FALLBACK  # the span of a genexp may hold "()"; one of a def, no decorators
        choice = _pick_piece(old, rng, parent, fn, donors)
        if choice is None:
            return None
        donor, donor_fn, piece, where = choice
        details, used = _donor_details(old, donor, donor_fn, piece, where, parent, fn)
        text = where.source(piece)
        if where.has_fstring or isinstance(piece, ast.GeneratorExp) \
                or (isinstance(piece, ast.stmt) and "\n" in text):
            # Its text cannot be cut out exactly, or would need re-indenting: graft the tree.
            node = found.fresh()
            self._sites(node)[found.sites(self.name, self._sites).index(site)].set(piece)
            return _unparsed(node, found, details, used)
        start, end = found.span(old)
        if isinstance(piece, ast.stmt):
            return _Edit(found.replace([(start, end, text)]), details, used)
        written = fitted(text, piece, site.owner, site.field)
        if touches_a_word(found.text, start, end) and not written.startswith("("):
            written = f"({written})"  # `1if c else 2` holds no space to keep `y` apart from `if`
        return _Edit(found.replace([(start, end, written)]), details, used,
                     well_formed=valid_anywhere(piece, where))

    def _mutate(self, node: FunctionNode, site: _Slot, rng: random.Random, parent: Genome,
                fn: EvolvableFunction, donors: Sequence[Genome],
                ) -> tuple[dict[str, Any], Sequence[Genome]] | None:
        old = site.get()
        choice = _pick_piece(old, rng, parent, fn, donors)
        if choice is None:
            return None
        donor, donor_fn, piece, where = choice
        site.set(copy.deepcopy(piece))
        return _donor_details(old, donor, donor_fn, piece, where, parent, fn)


#: the AST operator classes, in a stable order (default_operators() makes one of each)
AST_OPERATORS: tuple[type[_AstMutation], ...] = (
    ConstantPerturbation, OperatorSwap, StatementDeletion, StatementDuplication,
    StatementReorder, DonorSubtree,
)


# -- tree helpers -------------------------------------------------------


def _body_nodes(node: FunctionNode) -> list[ast.AST]:
    """Nodes of the body and argument defaults; not decorators, annotations or docstring."""
    roots: list[ast.AST] = [*node.args.defaults, *(d for d in node.args.kw_defaults if d)]
    roots += node.body[1:] if _docstring(node.body) else node.body
    return [found for root in roots for found in walk(root)]


def _docstring(body: list[ast.stmt]) -> bool:
    first = body[0] if body else None
    return isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
        and isinstance(first.value.value, str)


def _statement_slots(node: FunctionNode) -> list[_Slot]:
    """Every statement in every body inside the function (the function's docstring excluded)."""
    slots: list[_Slot] = []
    for owner in _statement_owners(node):
        for field in owner._fields:
            value = getattr(owner, field, None)
            if not (isinstance(value, list) and value and isinstance(value[0], ast.stmt)):
                continue
            skip = 1 if owner is node and field == "body" and _docstring(value) else 0
            slots += [_Slot(owner, field, i) for i in range(skip, len(value))]
    return slots


def _statement_owners(node: FunctionNode) -> list[ast.AST]:
    """The nodes that can hold statements, in :func:`walk`'s order (a subsequence of it).

    Statements live only in statements, except handlers and match cases, never
    inside an expression (a lambda's body is an expression): the walk skips
    expressions, which are most of an evolved function's nodes.
    """
    nodes: list[ast.AST] = [node]
    for owner in nodes:  # grows while it is read, breadth-first like walk()
        for field in owner._fields:
            value = getattr(owner, field, None)
            if value.__class__ is list:
                nodes += [item for item in value if isinstance(item, _HOLDS_STATEMENTS)]
            elif isinstance(value, _HOLDS_STATEMENTS):
                nodes.append(value)
    return nodes


def _expression_slots(node: FunctionNode) -> list[_Slot]:
    """Expressions that are read (not assigned to) and can stand anywhere an expression can."""
    slots: list[_Slot] = []
    for owner in _body_nodes(node):
        if isinstance(owner, ast.JoinedStr):
            continue  # its parts must stay string pieces
        for field in owner._fields:
            value = getattr(owner, field, None)
            if isinstance(value, list):
                slots += [_Slot(owner, field, i) for i, item in enumerate(value)
                          if _portable(item)]
            elif _portable(value):
                slots.append(_Slot(owner, field))
    return slots


def _portable(node: object) -> bool:
    return isinstance(node, ast.expr) and not isinstance(node, _NOT_PORTABLE) \
        and isinstance(getattr(node, "ctx", _LOAD), ast.Load)


_Piece = tuple[Genome, EvolvableFunction, ast.AST, FunctionScan]
#: one function's pieces of a kind, with where they come from
_Group = tuple[Genome, EvolvableFunction, FunctionScan, Sequence[ast.AST]]

def _donor_slots(node: FunctionNode) -> list[_Slot]:
    """Where donor code may go, and where it is taken from: expressions, then statements."""
    return _expression_slots(node) + _statement_slots(node)


def _donor_material(parent: Genome, target: EvolvableFunction | None,
                    donors: Sequence[Genome], kind: str) -> Sequence[_Group]:
    """Each donor function's portable ``kind`` pieces, in the donors' and their order.

    ``kind`` is ``"expr"`` or ``"stmt"``. Pieces belong to shared scans:
    copy one before it joins a tree that lives on.
    """
    material: list[_Group] = []
    for genome in donors or (parent,):
        # A function is not its own donor.
        skip = target.key if genome.id == parent.id and target is not None else ""
        if len(donors) <= 1:
            return _pieces(genome, skip, kind)  # one donor: its pieces as they are
        material += _pieces(genome, skip, kind)
    return material


@functools.lru_cache(maxsize=SCAN_CACHE_SIZE)
def _pieces(genome: Genome, skip: str, kind: str) -> tuple[_Group, ...]:
    """The ``kind`` pieces of ``genome``'s evolvable functions but ``skip`` (a key)."""
    return tuple((genome, fn, found, _kind_pieces(found, kind))
                 for fn in find_evolvables(genome) if fn.key != skip
                 for found in [scan(genome.sources[fn.path], fn)])


def _kind_pieces(found: FunctionScan, kind: str) -> Sequence[ast.AST]:
    """One function text's ``kind`` pieces, listed once per text (not per genome holding it)."""
    wanted = ast.stmt if kind == "stmt" else ast.expr
    # The donor operator's own sites of that function: one listing serves both uses.
    return found.sites(f"{DonorSubtree.name}:{kind}", lambda _: [
        piece for slot in found.sites(DonorSubtree.name, _donor_slots)
        for piece in [slot.get()] if isinstance(piece, wanted)])


def _pick_piece(old: ast.AST, rng: random.Random, parent: Genome, fn: EvolvableFunction,
                donors: Sequence[Genome]) -> _Piece | None:
    """A donor piece of the same kind as ``old`` (a statement or an expression), or None.

    Every piece of every donor function is equally likely (one draw over them all).
    """
    material = _donor_material(parent, fn, donors, "stmt" if isinstance(old, ast.stmt)
                               else "expr")
    total = sum(len(pieces) for *_, pieces in material)
    if not total:
        return None
    k = rng.randrange(total)
    for genome, donor_fn, found, pieces in material:
        if k < len(pieces):
            return genome, donor_fn, pieces[k], found
        k -= len(pieces)
    raise AssertionError("unreachable: k < total")


def _donor_details(old: ast.AST, donor: Genome, donor_fn: EvolvableFunction, piece: ast.AST,
                   where: FunctionScan, parent: Genome, fn: EvolvableFunction,
                   ) -> tuple[dict[str, Any], Sequence[Genome]]:
    # ``old`` comes from a parse of the parent's segment, ``piece`` from the donor's scan:
    # both can be quoted from their text, which is cheaper than printing them.
    mine = scan(parent.sources[fn.path], fn)
    details = {"line": _line(fn, old), "donor": donor.id, "donor_function": donor_fn.key,
               "change": f"{_brief_text(mine.source(old))} -> {_brief_text(where.source(piece))}"}
    return details, ([donor] if donor.id != parent.id else [])


def _unparsed(node: FunctionNode, found: FunctionScan, details: dict[str, Any],
              used: Sequence[Genome]) -> _Edit | None:
    """The rewritten def as text, or None if it cannot be printed or did not change."""
    ast.fix_missing_locations(node)
    try:
        after = ast.unparse(node)
    except (ValueError, TypeError, AttributeError, RecursionError):
        return None  # a tree unparse cannot print is not code
    return None if after == found.normalized else _Edit(after, details, used)


def _nudged(old: float, rng: random.Random) -> float:
    if isinstance(old, int):
        return old + rng.choice((-1, 1))
    if rng.random() < 0.5 and old != 0:
        return _round(old * (1.0 + rng.gauss(0.0, FLOAT_SIGMA)))
    return _round(old + rng.gauss(0.0, FLOAT_SIGMA * max(abs(old), 1.0)))


def _line(fn: EvolvableFunction, node: ast.AST) -> int:
    """The file line of a node parsed from ``fn``'s segment (whose line 1 is ``fn.start``)."""
    return fn.start - 1 + int(getattr(node, "lineno", 1))


def _brief(node: ast.AST, limit: int = 60) -> str:
    try:
        text = ast.unparse(node)
    except (ValueError, TypeError, AttributeError):
        text = type(node).__name__
    return _brief_text(text, limit)


def _brief_text(text: str, limit: int = 60) -> str:
    """The first line of ``text``, cut to ``limit`` characters."""
    line = text.strip().split("\n", 1)[0]
    return line if len(line) <= limit else line[:limit - 3] + "..."


def _round(value: float) -> float:
    return float(f"{value:.{_FLOAT_DIGITS}g}")
