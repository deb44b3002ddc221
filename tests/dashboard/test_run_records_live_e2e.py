"""Universes and red/blue matches appear in the open dashboard as the runs record them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.dashboard.conftest import Watched, login_url
from tests.dashboard.test_run_records_e2e import RED_BLUE
from tests.dashboard.test_views_e2e import SHOW_TIMEOUT_MS, open_dashboard, show, started_run
from tests.evolution.test_universes import AGENT, TASK
from tests.supervisor.harness import Stack

#: each evaluation waits this long, so the page is open before the universes finish
SLOW_TASK = "import time\n" + TASK.replace("def evaluate(agent):\n",
                                           "def evaluate(agent):\n    time.sleep(1.5)\n")


def test_universes_and_matches_appear_without_a_reload(
        stack: Stack, page: Watched, tmp_path: Path) -> None:
    (tmp_path / "agent.py").write_text(AGENT)
    (tmp_path / "task.py").write_text(SLOW_TASK)
    run_dir = tmp_path / "run"
    universes = subprocess.Popen(
        [sys.executable, "-m", "project_o.evolution.evolve_cli", "--agent",
         str(tmp_path / "agent.py"), "--task", str(tmp_path / "task.py"), "--universes", "4",
         "--seed", "3", "--workers", "1", "--run-dir", str(run_dir), "--json"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    red_blue = None
    try:
        run_id = started_run(run_dir)
        open_dashboard(page, login_url(stack, run_dir))
        show(page, "runs")
        page.page.locator("#runs-list tr", has_text=run_id).click()
        assert universes.poll() is None, "the universes ended before the page could watch"
        assert page.page.locator("#universes").count() == 0
        red_blue = subprocess.Popen(
            [sys.executable, "-m", "project_o.cli", "evolve", "--adversarial", "--agent",
             str(RED_BLUE / "agent.py"), "--task", str(RED_BLUE / "task.py"), "--rounds", "3",
             "--vault", str(run_dir / "VAULT"), "--json"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        page.page.wait_for_selector("#chart-universes canvas", timeout=120_000)
        rows = page.page.locator("table[aria-label='universes side by side'] tbody tr")
        assert rows.count() == 4
        page.page.wait_for_function("() => Number(document.querySelector('#redteam')"
                                    "?.dataset.matches || 0) > 0", timeout=120_000)
        page.page.wait_for_selector("#chart-matches canvas", timeout=SHOW_TIMEOUT_MS)
        page.screenshot(tmp_path, "runs-universes-matches-live")
    finally:
        for process in (universes, red_blue):
            if process is not None:
                process.kill()
                process.wait()
    assert page.problems == []
