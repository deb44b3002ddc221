"""`project-o lineage`: the version tree read straight from a catalog we fill ourselves."""

from __future__ import annotations

import io
import itertools
import json
from pathlib import Path

import pytest
from rich.console import Console

from project_o.cli import main
from project_o.lineage import (
    build_lineage,
    lineage_to_dict,
    read_lineage,
    render_experiment,
    render_lineage,
)
from project_o.vault.catalog import Catalog


@pytest.fixture
def vault(tmp_path: Path) -> Path:
    """A vault whose catalog holds a small evolution history.

    root (good) ─┬─ crash (rejected in the shadow)
                 ├─ fast (serving, promoted through the canary) ── regress (rolled back)
                 └─ cross (crossover of root and fast: its first parent is root)
    orphan: its parent is not in the catalog, so it is a root
    """
    ticks = itertools.count(1_700_000_000)
    with Catalog.open(tmp_path / "catalog.sqlite", clock=lambda: float(next(ticks))) as c:
        c.add_version("root", source={"a.py": "1"}, operator="user", status="good",
                      reason="served requests successfully")
        c.add_version("crash", source={"a.py": "2"}, parents=["root"], operator="agent",
                      status="rejected", reason="shadow died: RecursionError")
        c.add_version("fast", source={"a.py": "3"}, parents=["root"], operator="agent",
                      status="serving", reason="promoted: latency better")
        c.add_version("regress", source={"a.py": "4"}, parents=["fast"], operator="ast",
                      status="rolled_back", reason="errors in the validation window")
        c.add_version("cross", source={"a.py": "5"}, parents=["root", "fast"],
                      operator="crossover", status="candidate")
        c.add_version("orphan", source={"a.py": "6"}, parents=["gone"], operator="user")
        exp = c.add_experiment("shadow", "crash", baseline_version="root")
        c.update_experiment(exp.id, stage="done", status="rejected", decision="reject",
                            reason="candidate crashed")
    return tmp_path


def _text(render: object, *args: object) -> str:
    console = Console(file=io.StringIO(), width=240, color_system=None)
    render(*args, console=console)  # type: ignore[operator]
    return console.file.getvalue()  # type: ignore[attr-defined]


def test_children_are_drawn_under_their_first_parent(vault: Path) -> None:
    roots = read_lineage(vault)

    assert [r.version.id for r in roots] == ["root", "orphan"]
    root = roots[0]
    assert [c.version.id for c in root.children] == ["crash", "fast", "cross"]
    fast = root.children[1]
    assert [c.version.id for c in fast.children] == ["regress"]
    assert root.children[2].extra_parents == ("fast",)


def test_serving_version_and_last_experiment_are_attached(vault: Path) -> None:
    roots = read_lineage(vault)
    nodes = {n["id"]: n for n in _flatten(lineage_to_dict(roots)["versions"])}

    assert lineage_to_dict(roots)["serving"] == "fast"
    assert [i for i, n in nodes.items() if n["serving"]] == ["fast"]
    assert nodes["crash"]["experiment"]["status"] == "rejected"
    assert nodes["crash"]["experiment"]["reason"] == "candidate crashed"
    assert nodes["fast"]["experiment"] is None


def test_rendered_tree_shows_status_reason_and_nesting(vault: Path) -> None:
    text = _text(render_lineage, read_lineage(vault))
    lines = text.splitlines()

    regress = next(line for line in lines if "regress" in line)
    fast = next(line for line in lines if " fast " in line)
    assert "rolled back" in regress and "errors in the validation window" in regress
    assert "◀ serving" in fast
    # deeper in the tree means indented further
    assert regress.index("regress") > fast.index("fast")
    assert "shadow rejected" in next(line for line in lines if "crash" in line)
    assert "× fast" in next(line for line in lines if "cross" in line)


def test_cli_prints_json_and_refuses_a_vault_without_catalog(
    vault: Path, tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["lineage", "--vault", str(vault), "--json"]) == 0
    tree = json.loads(capsys.readouterr().out)
    assert {n["id"] for n in _flatten(tree["versions"])} == {
        "root", "crash", "fast", "regress", "cross", "orphan"}

    empty = tmp_path_factory.mktemp("empty")
    assert main(["lineage", "--vault", str(empty)]) == 1
    assert "no catalog" in capsys.readouterr().err
    assert not (empty / "catalog.sqlite").exists()


def test_empty_catalog_says_so() -> None:
    assert "none yet" in _text(render_lineage, build_lineage([]))


def test_experiment_view_shows_statistics_and_timeline() -> None:
    experiment = {
        "id": "e1", "kind": "canary", "candidate_version": "fast", "baseline_version": "root",
        "stage": "done", "status": "promoted", "reason": "latency better",
        "statistics": {"latency": {"n": {"baseline": 60, "candidate": 61},
                                   "mean": {"baseline": 12.5, "candidate": 1.5},
                                   "p_value": 0.001, "decision": "better"}},
        "timeline": [{"ts": 10.0, "stage": "shadow", "event": "started", "detail": ""},
                     {"ts": 12.5, "stage": "canary-10", "event": "stage", "detail": "10%"}],
    }
    text = _text(render_experiment, experiment)

    assert "promoted" in text and "latency better" in text
    assert "better" in text and "12.5" in text
    assert "2.50s" in text and "canary-10" in text


def _flatten(nodes: list[dict[str, object]]) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for node in nodes:
        out.append(node)
        out.extend(_flatten(node["children"]))  # type: ignore[arg-type]
    return out
