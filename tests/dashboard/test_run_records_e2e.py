"""Universes and red/blue runs leave their outcome on disk; the views and the report draw it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from project_o.dashboard import runs_view
from project_o.dashboard.redteam_view import red_team
from project_o.evolution.adversarial import AdversarialConfig, run_adversarial
from project_o.evolution.referee import local_evaluators
from project_o.evolution.run_records import ROUNDS_FILE, iter_rounds
from project_o.vault.catalog import Catalog
from tests.dashboard.test_report_e2e import offline_page, report
from tests.evolution.test_universes import AGENT, TASK

RED_BLUE = Path(__file__).resolve().parents[2] / "examples" / "red_blue"
#: a few rounds on two cores: enough for red to find the seeded bug and blue to answer
SMALL = AdversarialConfig(seed=0, rounds=4, red_inputs=8, blue_children=4, timeout_s=10)


@pytest.fixture(scope="module")
def universes_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A real `project-o evolve --universes 4` run; its directory and its --json output."""
    root = tmp_path_factory.mktemp("universes")
    (root / "agent.py").write_text(AGENT)
    (root / "task.py").write_text(TASK)
    done = subprocess.run(
        [sys.executable, "-m", "project_o.evolution.evolve_cli", "--agent",
         str(root / "agent.py"), "--task", str(root / "task.py"), "--universes", "4",
         "--seed", "3", "--workers", "1", "--run-dir", str(root / "run"), "--json"],
        capture_output=True, text=True, timeout=240, check=True)
    return root / "run", json.loads(done.stdout)


@pytest.fixture(scope="module")
def red_blue_vault(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """A real red/blue run into a vault; the vault and the run's result."""
    vault = tmp_path_factory.mktemp("redblue") / "vault"
    vault.mkdir()
    Catalog.open(vault / "catalog.sqlite").close()  # what makes it a vault to the report
    result = run_adversarial(RED_BLUE / "agent.py", RED_BLUE / "task.py", config=SMALL,
                             vault=vault, evaluators=local_evaluators(workers=1))
    return vault, result


def test_a_universes_run_records_each_universe_and_the_winner(
        universes_run: tuple[Path, dict[str, Any]]) -> None:
    run_dir, printed = universes_run
    # --json is what it was: the main, the ranked universes, the winner (and the LLM's
    # usage, null here: no model was given).
    assert set(printed) == {"main", "ranked", "winner", "submitted", "llm"}
    assert printed["llm"] is None
    [run] = runs_view.list_runs(run_dir / runs_view.CATALOG_FILE)
    assert run["config"]["mode"] == "universes" and run["generations_done"] == 1
    detail = runs_view.run_detail(run_dir / runs_view.CATALOG_FILE, run["id"])
    assert detail is not None
    stored = detail["universes"]
    assert stored["run_seed"] == 3 and stored["winner"] == printed["winner"]
    assert [u["version"] for u in stored["universes"]] == [r["version"] for r in printed["ranked"]]
    assert stored["main"]["version"] == printed["main"]["version"]
    for universe, ranked in zip(stored["universes"], printed["ranked"], strict=True):
        assert universe["scores"][0] == stored["main"]["score"] == 5.0
        assert universe["scores"][1] == ranked["metrics"].get("score", universe["scores"][1])
        assert universe["operator"] == ranked["operator"]
    assert detail["evaluations"] == 1 + len(printed["ranked"])


def test_a_red_blue_run_records_every_round_match(red_blue_vault: tuple[Path, Any]) -> None:
    vault, result = red_blue_vault
    rounds = list(iter_rounds(vault))
    assert [r["round"] for r in rounds] == list(range(1, result.rounds + 1))
    assert len({r["run"] for r in rounds}) == 1
    for line, row in zip(rounds, result.history, strict=True):
        assert line["champion"] == row["champion"] and line["score"] == row["score"]
        assert line["passed"] == row["passed"] and line["suite"] == row["findings"]
        assert line["proposed"] == SMALL.red_inputs and 0 <= line["broke"] <= line["proposed"]
        assert len(line["inputs"]) == SMALL.red_inputs
    assert sum(r["new_findings"] for r in rounds) == len(result.findings)
    assert rounds[-1]["champion"] == result.winner.id
    assert red_team([vault])["matches"][-1]["round"] == result.rounds
    # a torn last line (kill -9 mid-append) is skipped, the rest is kept
    with (vault / ROUNDS_FILE).open("a") as torn:
        torn.write('{"run": "x", "rou')
    assert len(list(iter_rounds(vault))) == len(rounds)


def test_the_reports_show_universes_and_matches_as_charts_and_tables(
        universes_run: tuple[Path, dict[str, Any]], red_blue_vault: tuple[Path, Any],
        browser: Any, tmp_path: Path) -> None:
    run_dir, printed = universes_run
    output = tmp_path / "universes.html"
    done = report(run_dir, output)
    assert done.returncode == 0, done.stderr
    page, attempts, context = offline_page(browser)
    try:
        page.page.goto(output.as_uri() + "#runs")
        page.page.wait_for_selector("#chart-universes canvas")
        table = page.page.locator("table[aria-label='universes side by side']").inner_text()
        page.screenshot(tmp_path, "report-universes")
    finally:
        context.close()
    for ranked in printed["ranked"]:
        assert ranked["operator"] in table
    assert "winner" in table or printed["winner"] is None
    assert attempts == [] and page.problems == []

    vault, result = red_blue_vault
    output = tmp_path / "redblue.html"
    assert report(vault, output).returncode == 0
    page, attempts, context = offline_page(browser)
    try:
        page.page.goto(output.as_uri() + "#runs")
        page.page.wait_for_selector("#chart-matches canvas")
        matches = page.page.locator("table[aria-label='red vs blue matches']").inner_text()
        page.screenshot(tmp_path, "report-matches")
    finally:
        context.close()
    assert "red proposed" in matches and "blue score" in matches
    assert result.winner.id[:8] in matches
    assert attempts == [] and page.problems == []
