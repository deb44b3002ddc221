"""1,000 versions and 10,000 events: paged from the server, capped on the page.

Drawing times are printed (they depend on the machine), not asserted.
"""

from __future__ import annotations

import json
import random
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from project_o.dashboard import catalog_view
from project_o.dashboard.report import write_report
from project_o.vault.catalog import Catalog
from tests.dashboard.conftest import Watched, login_url, watch
from tests.supervisor.harness import Stack

VERSIONS = 1000
EVENTS = 10_000
STATUSES = ("candidate", "rejected", "rolled_back", "promoted", "shadow", "retired")


@pytest.fixture(scope="module")
def big_vault(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A vault catalog with a GA-shaped lineage of 1,000 versions and 10,000 events."""
    vault = tmp_path_factory.mktemp("big") / "vault"
    vault.mkdir()
    Catalog.open(vault / "catalog.sqlite").close()
    rng = random.Random(7)
    rows, ids = [], []
    for n in range(VERSIONS):
        parents = rng.sample(ids[-40:], k=min(len(ids), rng.choice((1, 1, 2)))) if ids else []
        vid = f"{n:012x}"
        source = {"agent.py": f"VALUE = {n}\n"}
        status = "serving" if n == VERSIONS - 1 else rng.choice(STATUSES)
        rows.append((vid, json.dumps(parents), "mut_ast_operator" if parents else "seed", "{}",
                     json.dumps(source), status, "", 1000.0 + n))
        ids.append(vid)
    events = [(1000.0 + n / 10, "crash" if n % 9 == 0 else "start", f"main-{n}", f"event {n}",
               "null") for n in range(EVENTS)]
    with sqlite3.connect(vault / "catalog.sqlite") as conn:
        conn.executemany("INSERT INTO versions (id, parents, operator, params, source, status,"
                         " reason, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        conn.executemany("INSERT INTO events (ts, kind, subject, reason, data)"
                         " VALUES (?, ?, ?, ?, ?)", events)
    return vault


def test_versions_come_in_pages_and_events_newest_last(big_vault: Path) -> None:
    catalog = big_vault / "catalog.sqlite"
    first = catalog_view.versions_page(catalog, 0, 5000)
    assert first["total"] == VERSIONS and len(first["versions"]) == catalog_view.MAX_PAGE
    tail = catalog_view.versions_page(catalog, 990, 100)
    assert [v["id"] for v in tail["versions"]] == [f"{n:012x}" for n in range(990, 1000)]
    assert "source" not in tail["versions"][0]  # sources only in the detail
    events = catalog_view.events(catalog, 100)
    assert len(events) == 100 and events[-1]["subject"] == f"main-{EVENTS - 1}"


def test_a_thousand_version_lineage_draws_in_the_browser(
        big_vault: Path, browser: Any, tmp_path: Path) -> None:
    output = write_report(big_vault, tmp_path / "big.html")
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        page = watch(context.new_page())
        started = time.monotonic()
        page.page.goto(output.as_uri() + "#versions")
        page.page.wait_for_function(
            f"() => document.querySelectorAll('#dag svg circle').length === {VERSIONS}")
        print(f"{VERSIONS} versions drawn in {time.monotonic() - started:.2f} s")
        assert page.page.locator("#versions-table tbody tr").count() == 100  # one table page
        page.page.locator("#dag svg circle").last.click()
        page.page.wait_for_selector("#version-detail pre.source")
    finally:
        context.close()
    assert page.problems == []


def test_ten_thousand_events_are_capped_on_the_live_page(stack: Stack, page: Watched) -> None:
    page.page.goto(login_url(stack))
    page.page.wait_for_selector("#conn.up")
    page.page.wait_for_selector("#events table")
    started = time.monotonic()
    page.page.evaluate(f"""() => {{
        const events = [];
        for (let n = 0; n < {EVENTS}; n++) {{
            events.push({{ts: 1000 + n, kind: n % 9 ? "start" : "crash", subject: "main-" + n,
                         reason: "event " + n}});
        }}
        PO.live.emit(Object.assign({{}}, PO.live.last, {{type: "snapshot", events}}));
    }}""")
    print(f"{EVENTS} events taken in {time.monotonic() - started:.2f} s")
    assert page.page.locator("#events tbody tr").count() == 200
    assert page.page.locator("#events-count").inner_text().startswith(f"200 shown of {EVENTS}")
    page.page.locator("#events input[type=search], input[aria-label='filter events']").fill(
        "main-9999")
    assert page.page.locator("#events tbody tr").count() == 1
    assert page.problems == []
