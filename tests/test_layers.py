"""Imports point down the layers of docs/design.md, and nothing imports itself in a circle.

The import graph is read with :mod:`ast` from the sources (nothing is
imported): module-level imports, imports inside functions, imports under
``TYPE_CHECKING`` and ``importlib.import_module("literal")`` calls all
count, because each is a dependency a reader has to follow.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "project_o"
DESIGN = ROOT / "docs" / "design.md"
#: how the package's own __init__ is named in the table
ROOT_UNIT = "project_o.__init__"

Graph = dict[str, set[str]]


def read_layers(design: Path = DESIGN) -> dict[str, int]:
    """The table under "## Layers": unit name -> layer number."""
    text = design.read_text(encoding="utf-8")
    section = text.split("\n## Layers\n", 1)[1].split("\n## ", 1)[0]
    layers: dict[str, int] = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and cells[0].isdigit():
            for unit in re.findall(r"`([\w.]+)`", cells[1]):
                assert unit not in layers, f"{unit} is in two rows of the layer table"
                layers[unit] = int(cells[0])
    return layers


def module_names(package: Path) -> dict[str, Path]:
    """Every module of ``package`` by dotted name (a package by its own name)."""
    names = {}
    for path in sorted(package.rglob("*.py")):
        parts = [package.name, *path.relative_to(package).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def imports_of(name: str, path: Path, known: Mapping[str, Path]) -> Iterator[str]:
    """The package's modules that module ``name`` imports, anywhere in its text."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    top = name.split(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, package)
            # "from pkg import name": name is a module when pkg.name is one
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base
                       for a in node.names]
        elif (isinstance(node, ast.Call) and _called(node.func) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)):
            targets = [node.args[0].value]
        else:
            continue
        yield from (t for t in targets if t.split(".")[0] == top and t in known)


def _absolute(node: ast.ImportFrom, package: str) -> str:
    if not node.level:
        return node.module or ""
    parts = package.split(".")
    base = parts[: len(parts) - node.level + 1]
    return ".".join([*base, node.module] if node.module else base)


def _called(func: ast.expr) -> str | None:
    if isinstance(func, ast.Attribute):
        return func.attr
    return func.id if isinstance(func, ast.Name) else None


def import_graph(package: Path) -> Graph:
    """Module -> the package's modules it imports (itself excluded)."""
    known = module_names(package)
    return {name: set(imports_of(name, path, known)) - {name} for name, path in known.items()}


def unit_of(module: str, layers: Mapping[str, int]) -> str | None:
    """The most specific table entry that holds ``module``; None if no row names it."""
    if module.count(".") == 0:
        return ROOT_UNIT if ROOT_UNIT in layers else None
    candidates = [u for u in layers if module == u or module.startswith(u + ".")]
    return max(candidates, key=len, default=None)


def upward_imports(graph: Graph, layers: Mapping[str, int]) -> list[str]:
    """Each import from a lower layer to a higher one, as "a (n) -> b (m)"."""
    found = []
    for module, targets in sorted(graph.items()):
        here = unit_of(module, layers)
        for target in sorted(targets):
            there = unit_of(target, layers)
            if here and there and layers[there] > layers[here]:
                found.append(f"{module} ({layers[here]}) -> {target} ({layers[there]})")
    return found


def cycles(graph: Graph) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:  # recursion depth is bounded by the module count
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def unit_graph(graph: Graph, layers: Mapping[str, int]) -> Graph:
    """The module graph folded onto the table's units."""
    folded: Graph = {}
    for module, targets in graph.items():
        here = unit_of(module, layers)
        if here is None:
            continue
        units = {unit_of(t, layers) for t in targets} - {None, here}
        folded.setdefault(here, set()).update(u for u in units if u is not None)
    return folded


@pytest.fixture(scope="module")
def layers() -> dict[str, int]:
    return read_layers()


@pytest.fixture(scope="module")
def graph() -> Graph:
    return import_graph(PACKAGE)


def test_every_module_has_a_layer(graph: Graph, layers: dict[str, int]) -> None:
    homeless = [m for m in sorted(graph) if unit_of(m, layers) is None]
    assert homeless == [], "add these to a row of the layer table in docs/design.md"


def test_every_row_names_real_modules(graph: Graph, layers: dict[str, int]) -> None:
    named = {unit_of(m, layers) for m in graph}
    assert sorted(set(layers) - named) == []


def test_imports_point_down(graph: Graph, layers: dict[str, int]) -> None:
    # To fix one: move the shared type or function down to the lower layer, or let
    # the higher layer hand it in (a protocol, a callable), as supervisor.__main__ does.
    assert upward_imports(graph, layers) == []


def test_no_cycle_between_units(graph: Graph, layers: dict[str, int]) -> None:
    assert cycles(unit_graph(graph, layers)) == []


def test_no_cycle_between_modules(graph: Graph) -> None:
    assert cycles(graph) == []


# -- the checks themselves catch what they are for -----------------------------


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / "pkg" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "pkg"


def test_an_upward_import_inside_a_function_is_found(tmp_path: Path) -> None:
    package = _write(tmp_path, {
        "__init__.py": "",
        "low/__init__.py": "",
        "low/a.py": "def f():\n    from pkg.high import b\n",
        "high/__init__.py": "",
        "high/b.py": "from ..low import a\n",
    })
    layers = {"pkg.low": 0, "pkg.high": 1}
    graph = import_graph(package)
    assert upward_imports(graph, layers) == ["pkg.low.a (0) -> pkg.high.b (1)"]
    assert cycles(unit_graph(graph, layers)) == [["pkg.high", "pkg.low"]]


def test_a_type_checking_cycle_is_found(tmp_path: Path) -> None:
    package = _write(tmp_path, {
        "__init__.py": "",
        "a.py": "from pkg.b import B\n",
        "b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import c\n",
        "c.py": "import importlib\nimportlib.import_module('pkg.a')\n",
    })
    assert cycles(import_graph(package)) == [["pkg.a", "pkg.b", "pkg.c"]]


def test_the_most_specific_row_wins() -> None:
    layers = {"pkg.sup": 1, "pkg.sup.__main__": 3, "pkg.gate": 2, ROOT_UNIT: 0}
    assert unit_of("pkg.sup.__main__", layers) == "pkg.sup.__main__"
    assert unit_of("pkg.sup.api", layers) == "pkg.sup"
    assert unit_of("pkg", layers) == ROOT_UNIT
    assert unit_of("pkg.other", layers) is None
