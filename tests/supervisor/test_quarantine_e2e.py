"""A canary's writes against a real supervisor: kept apart on rollback, applied only by hand.

The scenario: a candidate is faster (so it passes the shadow) but deletes a
key on every request it serves; in the canary it starts failing and is
rolled back. Its deletions were acknowledged -- they are not lost -- but
they never reach the memory the main serves until someone applies them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from tests.supervisor import test_evolution_e2e as evolution_e2e
from tests.supervisor.harness import TOKEN, Stack
from tests.supervisor.test_evolution_e2e import BASE, FAST_STATS, FINISHED, PLAIN, experiment

DELETING = BASE.replace("DELAY = 0.01", "DELAY = 0.0").replace(PLAIN, (
    '    ctx.memory.delete("precious")\n'
    '    if request.get("phase") == 2:\n'
    '        raise RuntimeError("broken in the canary")\n' + PLAIN))

stack = evolution_e2e.stack  # the fixture: a supervisor serving BASE


def run_until_rolled_back(stack: Stack, experiment_id: str) -> dict[str, Any]:
    """Phase 1 until the canary serves, then phase 2 (the candidate fails) until decided."""
    state = experiment(stack, experiment_id)
    for _ in range(800):
        phase = 2 if state["stage"].startswith("canary") else 1
        assert stack.ask({"n": 1, "phase": phase}).status_code in (200, 502)
        state = experiment(stack, experiment_id)
        if state["status"] in FINISHED:
            return state
    raise AssertionError(f"the experiment never finished: {state}")


def test_a_rolled_back_canarys_deletions_stay_quarantined_until_applied(stack: Stack) -> None:
    assert stack.http is not None
    assert stack.do("set", key="precious", value="keep me").status_code == 200
    created = stack.http.post("/v1/evolution/experiments", json={
        "candidate": {"source": DELETING}, "kind": "shadow", "share": 1.0, **FAST_STATS})
    assert created.status_code == 201, created.text
    final = run_until_rolled_back(stack, created.json()["id"])
    assert final["status"] == "rolled_back", final
    assert "in the canary" in final["reason"], final["reason"]

    # The key the canary deleted, again and again, is still in the agent's memory.
    assert stack.do("get", key="precious").json()["output"] == "keep me"

    [overlay] = stack.http.get("/v1/quarantine").json()["overlays"]
    assert overlay["status"] == "quarantined" and overlay["writes"] > 0
    assert overlay["version"] == created.json()["candidate_version"]
    assert overlay["experiment_id"] == created.json()["id"]
    assert overlay["reason"].startswith("rolled_back: ")
    shown = stack.http.get(f"/v1/quarantine/{overlay['id']}").json()
    deletions = [w for w in shown["writes_shown"] if w["operation"] == "memory_delete"]
    assert len(deletions) == overlay["writes"]
    assert all(w["data"] == {"key": "precious"} and len(w["requests"]) == 1 for w in deletions)
    timeline = " ".join(e["detail"] for e in final["timeline"])
    assert f"vault quarantine VAULT --apply {overlay['id']}" in timeline

    # The CLI reads the same from the vault's files, no supervisor needed.
    listed = subprocess.run(
        [sys.executable, "-m", "project_o.cli", "vault", "quarantine", str(stack.vault),
         "--json"], capture_output=True, text=True, check=True)
    assert [o["id"] for o in json.loads(listed.stdout)["overlays"]] == [overlay["id"]]

    # Only an explicit command applies them; the main then serves them.
    applied = subprocess.run(
        [sys.executable, "-m", "project_o.cli", "vault", "quarantine", str(stack.vault),
         "--apply", overlay["id"]], check=False, capture_output=True, text=True,
        env={**os.environ, "PROJECT_O_TOKEN": TOKEN})
    assert applied.returncode == 0, applied.stderr
    assert json.loads(applied.stdout)["status"] == "applied"
    assert stack.do("get", key="precious").json()["output"] is None
    again = stack.http.post(f"/v1/quarantine/{overlay['id']}/apply")
    assert again.status_code == 409 and again.json()["error"]["type"] == "OverlayNotApplicable"
    unknown = stack.http.get("/v1/quarantine/doesnotexist")
    assert unknown.status_code == 404 and unknown.json()["error"]["type"] == "UnknownOverlay"


def test_a_promoted_canarys_writes_reach_the_agents_memory(stack: Stack) -> None:
    assert stack.http is not None
    faster = BASE.replace("DELAY = 0.01", "DELAY = 0.0")
    created = stack.http.post("/v1/evolution/experiments", json={
        "candidate": {"source": faster}, "kind": "canary", **FAST_STATS})
    assert created.status_code == 201, created.text
    versions: dict[str, str] = {}
    for n in range(800):  # plain requests show it is faster; writes go to both arms
        assert stack.ask({"n": n}).status_code == 200
        reply = stack.do("set", key=f"k{n}", value=n)
        assert reply.status_code == 200, reply.text
        versions[f"k{n}"] = reply.json()["version"]
        state = experiment(stack, created.json()["id"])
        if state["status"] in FINISHED:
            break
    assert state["status"] == "promoted", state
    candidate = created.json()["candidate_version"]
    assert candidate in versions.values()  # the canary did acknowledge some writes
    for key, n in ((k, int(k[1:])) for k in versions):
        assert stack.do("get", key=key).json()["output"] == n, key
    [overlay] = stack.http.get("/v1/quarantine").json()["overlays"]
    # the candidate's writes before promotion went through the overlay; after it, as main
    assert overlay["status"] == "promoted"
    assert 0 < overlay["writes"] <= sum(1 for v in versions.values() if v == candidate)
