"""Writing an AST operator's change straight into source text, where that is exact.

::

    swap an operator     operator_span(): the token between two operands, if only
                         whitespace and parentheses surround it
    graft an expression  fitted(): the donor's text, in parentheses unless precedence
                         (or a free-standing position) makes them unnecessary;
                         touches_a_word(): `1if` has no space to keep a name apart
    skip the compile     valid_anywhere(): no await / yield / := inside the piece

Every rule here must make the text mean what the tree change means; the
tests in tests/evolution/test_ast_ops.py compare the two on every edit.
"""

from __future__ import annotations

import ast
from typing import Any

from project_o.evolution.operators.function_scan import FunctionScan, walk

__all__ = ["TOKENS", "fitted", "operator_span", "touches_a_word", "valid_anywhere"]

#: operator tokens, for swapping in the text
TOKENS: dict[type[ast.AST], str] = {
    ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//", ast.Mod: "%",
    ast.LShift: "<<", ast.RShift: ">>", ast.BitAnd: "&", ast.BitOr: "|", ast.Lt: "<",
    ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!=", ast.Is: "is",
    ast.IsNot: "is not", ast.In: "in", ast.NotIn: "not in", ast.UAdd: "+", ast.USub: "-",
}
#: binary swaps whose partner binds exactly as tightly (& and | do not)
_SAME_LEVEL_SWAPS = frozenset({ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod,
                               ast.LShift, ast.RShift})
#: Python's binding strength of binary operators (the language reference's table)
_BINARY_PRECEDENCE: dict[type[ast.AST], int] = {
    ast.BitOr: 1, ast.BitXor: 2, ast.BitAnd: 3, ast.LShift: 4, ast.RShift: 4, ast.Add: 5,
    ast.Sub: 5, ast.Mult: 6, ast.MatMult: 6, ast.Div: 6, ast.FloorDiv: 6, ast.Mod: 6,
    ast.Pow: 8,
}
#: unary +, -, ~: between the multiplicative operators and **
_UNARY_PRECEDENCE = 7

#: expressions written as they are anywhere: nothing can bind into them
_ATOMS = (ast.Name, ast.Constant, ast.Attribute, ast.Subscript, ast.Call, ast.List, ast.Dict,
          ast.Set, ast.ListComp, ast.SetComp, ast.DictComp)
#: expressions that need parentheses wherever they are put
_NEEDS_PARENS = (ast.Tuple, ast.NamedExpr, ast.Yield, ast.YieldFrom, ast.GeneratorExp)
#: (owner, field) where a value stands alone: a statement's value, a call's argument
_FREE_OWNERS = (ast.Return, ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Expr, ast.Call,
                ast.keyword)
_FREE_FIELDS = frozenset({"value", "args"})


def fitted(text: str, piece: ast.AST, owner: ast.AST, field: str) -> str:
    """``text`` of ``piece`` as it must be written in ``owner.field``: in parentheses unless safe."""
    if "\n" in text or isinstance(piece, _NEEDS_PARENS):
        return f"({text})"
    if isinstance(owner, ast.Attribute) and isinstance(piece, ast.Constant) \
            and not isinstance(piece.value, str | bytes):
        return f"({text})"  # `2.split()` reads as the float `2.`
    if isinstance(piece, _ATOMS):
        return text
    if isinstance(owner, _FREE_OWNERS) and field in _FREE_FIELDS:
        return text  # a whole value or argument: nothing binds to it from outside
    if isinstance(owner, ast.BinOp) and isinstance(piece, ast.BinOp | ast.UnaryOp):
        outer, inner = _precedence(owner), _precedence(piece)
        right_assoc = isinstance(owner.op, ast.Pow)
        if inner > outer or (inner == outer and (field == "right") == right_assoc):
            return text
    return f"({text})"


def valid_anywhere(piece: ast.AST, where: FunctionScan) -> bool:
    """Whether ``piece`` is valid wherever an expression is read (no await, yield, :=)."""
    risky = where.sites("pieces:risky", lambda node: [
        n for n in walk(node) if isinstance(n, ast.Await | ast.Yield | ast.YieldFrom
                                            | ast.NamedExpr)])
    if not risky:
        return True
    inside = {id(n) for n in walk(piece)}
    return not any(id(n) in inside for n in risky)


def touches_a_word(text: str, start: int, end: int) -> bool:
    """Whether the span has a letter, digit or ``_`` right against it on either side."""
    before = text[start - 1] if start > 0 else " "
    after = text[end] if end < len(text) else " "
    return before.isalnum() or before == "_" or after.isalnum() or after == "_"


def _precedence(node: ast.BinOp | ast.UnaryOp) -> int:
    if isinstance(node, ast.UnaryOp):
        return _UNARY_PRECEDENCE if not isinstance(node.op, ast.Not) else 0
    return _BINARY_PRECEDENCE[type(node.op)]


def operator_span(found: FunctionScan, owner: Any, index: int | None) -> tuple[int, int] | None:
    """Where the operator token of ``owner`` is in the text, if a swap there is exact."""
    op = owner.op if index is None else owner.ops[index]
    if type(op) not in TOKENS:
        return None  # and / or: one BoolOp may hold several, and they bind differently
    if isinstance(owner, ast.UnaryOp):
        start = found.span(owner)[0]
        return (start, start + 1) if found.text[start] == TOKENS[type(op)] else None
    if isinstance(owner, ast.BinOp) and type(op) not in _SAME_LEVEL_SWAPS:
        return None  # & and | bind differently: the tree would need new parentheses
    if isinstance(owner, ast.Compare):
        left = owner.left if index == 0 else owner.comparators[index - 1]  # type: ignore[operator]
        right = owner.comparators[index]  # type: ignore[index]
    else:
        left, right = (owner.target, owner.value) if isinstance(owner, ast.AugAssign) \
            else (owner.left, owner.right)
    start, end = found.span(left)[1], found.span(right)[0]
    gap = found.text[start:end]
    words = gap.replace("(", " ").replace(")", " ").split()
    expected = TOKENS[type(op)] + ("=" if isinstance(owner, ast.AugAssign) else "")
    if " ".join(words) != expected:
        return None  # a comment or a line continuation sits in between
    first = gap.index(words[0])
    last = gap.rindex(words[-1]) + len(words[-1])
    return start + first, start + last
