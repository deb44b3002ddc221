"""An experiment the agent proposed (autonomy "propose"), approved from the browser.

The one state-changing call of the page: it goes out with the header
only the dashboard's own scripts send.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.dashboard.conftest import Watched, login_url
from tests.supervisor.harness import FAST_HEARTBEAT, Stack

PROPOSING = """
from project_o import Agent

agent = Agent("proposing")


@agent.handler
def handle(ctx, request):
    if request.get("do") == "evolve":
        return ctx.evolve("the agent asks for a faster version", source=request["source"])
    return {"n": request.get("n")}
"""


@pytest.fixture
def proposing(tmp_path: Path) -> Iterator[Stack]:
    agent = tmp_path / "proposing_agent.py"
    agent.write_text(PROPOSING)
    running = Stack(tmp_path / "vault",
                    ["--agent", str(agent), "--autonomy", "propose", *FAST_HEARTBEAT])
    yield running
    running.stop()


def test_a_proposed_experiment_is_approved_from_the_page(
        proposing: Stack, page: Watched, tmp_path: Path) -> None:
    candidate = PROPOSING.replace('"n": request.get("n")', '"n": request.get("n"), "v": 2')
    reply = proposing.do("evolve", source=candidate)
    assert reply.status_code == 200, reply.text
    proposed = reply.json()["output"]
    assert proposed["status"] == "proposed", proposed
    page.page.goto(login_url(proposing))
    page.page.wait_for_url("**/ui/")
    page.page.evaluate("location.hash = '#experiments'")
    page.page.locator("#experiments-list tr", has_text=proposed["experiment_id"][:12]).click()
    page.page.locator("#approve").click()
    page.page.wait_for_function(  # the status pill, redrawn from the evolution control's answer
        "() => { const pill = document.querySelector('#experiment-detail .stats .pill');"
        " return pill && pill.textContent !== 'proposed'; }", timeout=30_000)
    page.screenshot(tmp_path, "approved")
    assert proposing.http is not None
    state = proposing.http.get(f"/v1/evolution/experiments/{proposed['experiment_id']}").json()
    assert state["status"] != "proposed"
    assert page.problems == []
