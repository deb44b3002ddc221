"""A real supervisor, a real evolution run and Debian's Chromium driven by Playwright.

The browser is the system's ``chromium`` (``.ci/run`` installs the
package); Playwright never downloads one. Where Chromium is missing the
browser tests skip, except under CI, where that is a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.supervisor.harness import FAST_HEARTBEAT, TOKEN, Stack

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "symbolic_regression"
#: screenshots for the README are refreshed when this names a directory
DOCS_SHOTS_ENV = "PROJECT_O_DASHBOARD_SHOTS"

AGENT = """
import time
from project_o import Agent

agent = Agent("watched")
DELAY = 0.002


@agent.handler
def handle(ctx, request):
    if request.get("do") == "set":
        ctx.memory.set(request["key"], request["value"])
        return "ok"
    time.sleep(DELAY)
    return {"n": request.get("n")}
"""

#: the symbolic-regression task, slowed so a generation takes a moment to watch
SLOW_TASK = f'''
import sys, time
sys.path.insert(0, {str(EXAMPLE)!r})
from task import SCORE_BOUNDS, evaluate as _evaluate

def evaluate(agent):
    time.sleep({{delay}})
    return _evaluate(agent)
'''


def chromium_path() -> str:
    """The system Chromium, or skip (fail under CI: .ci/run installs it)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        message = "no chromium on PATH (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


# module scope: Playwright's sync API runs an event loop in this thread while
# open, and the asyncio tests of this package need the thread to themselves
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    path = chromium_path()
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        # --no-sandbox: CI runs as root, where Chromium's own sandbox cannot start
        launched = playwright.chromium.launch(executable_path=path, headless=True,
                                              args=["--no-sandbox"])
        yield launched
        launched.close()


@dataclass
class Watched:
    """A page, and every console error, page error and failed request it had."""

    page: Any
    problems: list[str] = field(default_factory=list)

    def screenshot(self, directory: Path, name: str) -> Path:
        path = directory / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        docs = os.environ.get(DOCS_SHOTS_ENV)
        if docs:
            Path(docs).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, Path(docs) / path.name)
        return path


def watch(page: Any) -> Watched:
    watched = Watched(page)
    page.on("console", lambda m: m.type == "error" and watched.problems.append(
        f"console: {m.text}"))
    page.on("pageerror", lambda e: watched.problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: watched.problems.append(
        f"request failed: {r.url} {r.failure}"))
    page.on("response", lambda r: r.status >= 400 and watched.problems.append(
        f"HTTP {r.status}: {r.url}"))
    return watched


@pytest.fixture
def page(browser: Any) -> Iterator[Watched]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        yield watch(context.new_page())
    finally:
        context.close()


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("dashboard")
    agent = root / "watched_agent.py"
    agent.write_text(AGENT)
    running = Stack(root / "vault", ["--agent", str(agent), *FAST_HEARTBEAT], heart=True)
    yield running
    running.stop()


def evolve_command(run_dir: Path, *, generations: int, delay: float) -> list[str]:
    task = run_dir.parent / f"{run_dir.name}_task.py"
    task.write_text(SLOW_TASK.format(delay=delay))
    return [sys.executable, "-m", "project_o.evolution.evolve_cli", "--agent",
            str(EXAMPLE / "agent.py"), "--task", str(task), "--population", "8",
            "--generations", str(generations), "--seed", "5", "--workers", "1",
            "--run-dir", str(run_dir), "--json"]


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small evolution run, complete."""
    run_dir = tmp_path_factory.mktemp("runs") / "done"
    subprocess.run(evolve_command(run_dir, generations=3, delay=0.0), check=True,
                   capture_output=True, timeout=240)
    return run_dir


def login_url(stack: Stack, *run_dirs: Path) -> str:
    """What `project-o dashboard --vault V --run-dir D` prints, run as the CLI."""
    env = {**os.environ, "PROJECT_O_TOKEN": TOKEN}
    argv = [sys.executable, "-m", "project_o.cli", "dashboard", "--vault", str(stack.vault)]
    for run_dir in run_dirs:
        argv += ["--run-dir", str(run_dir)]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=True)
    url = done.stdout.strip()
    assert "/ui/login?ticket=" in url, done.stdout + done.stderr
    return url
