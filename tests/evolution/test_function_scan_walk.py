"""The operators' tree walk visits what ``ast.walk`` visits, in the same order."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from project_o.evolution.operators.function_scan import walk

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("path", sorted((ROOT / "src" / "project_o" / "evolution").rglob("*.py"))
                         + sorted((ROOT / "examples").rglob("*.py")),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_walk_is_ast_walk(path: Path) -> None:
    tree = ast.parse(path.read_text())
    assert [id(node) for node in walk(tree)] == [id(node) for node in ast.walk(tree)]
    function = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.Module))
    assert [id(node) for node in walk(function)] == [id(node) for node in ast.walk(function)]
