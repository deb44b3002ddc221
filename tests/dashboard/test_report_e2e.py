"""``project-o report``: one HTML file that opens from file:// with the network cut."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from project_o.evolution.adversarial import Finding, FindingStore
from project_o.vault.catalog import Catalog
from tests.dashboard.conftest import Watched, watch
from tests.supervisor.harness import Stack


def report(source: Path, output: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "project_o.cli", "report", str(source),
                           "-o", str(output)], capture_output=True, text=True, timeout=120,
                          check=False)


def offline_page(browser: Any) -> tuple[Watched, list[str], Any]:
    """A page whose every request off file:// is aborted and remembered."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    attempts: list[str] = []

    def route(handle: Any) -> None:
        if handle.request.url.startswith("file://"):
            handle.continue_()
        else:
            attempts.append(handle.request.url)
            handle.abort()

    context.route("**/*", route)
    return watch(context.new_page()), attempts, context


def test_an_evolution_run_report_opens_offline(
        finished_run: Path, browser: Any, tmp_path: Path) -> None:
    output = tmp_path / "run-report.html"
    done = report(finished_run, output)
    assert done.returncode == 0, done.stderr
    page, attempts, context = offline_page(browser)
    try:
        page.page.goto(output.as_uri() + "#runs")
        page.page.wait_for_selector("#chart-score canvas")
        detail = page.page.locator("#run-detail").inner_text()
        assert "Winner's lineage" in detail and "seed" in detail
        page.screenshot(tmp_path, "report-runs")
        page.page.evaluate("location.hash = '#versions'")
        page.page.wait_for_selector("#dag svg circle")
        assert page.page.locator("#dag svg circle").count() > 3
        page.page.locator("#dag svg circle").last.click()
        page.page.wait_for_selector("#version-detail pre.diff")
        page.screenshot(tmp_path, "report-versions")
    finally:
        context.close()
    assert attempts == []
    assert page.problems == []
    html = output.read_text()
    assert "<script src=" not in html and 'rel="stylesheet"' not in html


def test_a_vault_report_opens_offline(stack: Stack, browser: Any, tmp_path: Path) -> None:
    output = tmp_path / "vault-report.html"
    done = report(stack.vault, output)
    assert done.returncode == 0, done.stderr
    page, attempts, context = offline_page(browser)
    try:
        page.page.goto(output.as_uri())
        page.page.wait_for_selector("#version-detail pre.source")
        page.page.evaluate("location.hash = '#experiments'")
        page.page.wait_for_selector("#experiments-list")
        page.screenshot(tmp_path, "report-vault")
    finally:
        context.close()
    assert attempts == []
    assert page.problems == []


@pytest.mark.parametrize("what", ["missing", "empty"])
def test_a_report_of_something_that_is_no_run_nor_vault_is_refused(
        what: str, tmp_path: Path) -> None:
    source = tmp_path / what
    if what == "empty":
        source.mkdir()
    done = report(source, tmp_path / "out.html")
    assert done.returncode == 1
    assert "neither an evolution run directory" in done.stderr
    assert not (tmp_path / "out.html").exists()


def test_red_vs_blue_rounds_are_in_a_vault_report(browser: Any, tmp_path: Path) -> None:
    vault = tmp_path / "vault"
    vault.mkdir()
    Catalog.open(vault / "catalog.sqlite").close()
    store = FindingStore(vault)
    for number, (kind, blue) in enumerate([("exception", "aaa111"), ("timeout", "aaa111"),
                                           ("wrong", "bbb222")]):
        store.append(Finding(input={"q": number}, kind=kind, detail=f"broke on {number}",
                             signature=kind, round=1 if blue == "aaa111" else 2, blue=blue))
    output = tmp_path / "redteam.html"
    assert report(vault, output).returncode == 0
    page, attempts, context = offline_page(browser)
    try:
        page.page.goto(output.as_uri() + "#runs")
        page.page.wait_for_selector("#redteam table")
        rounds = page.page.locator("#redteam table").first.inner_text()
    finally:
        context.close()
    assert "aaa111" in rounds and "bbb222" in rounds and "timeout" in rounds
    assert attempts == [] and page.problems == []
