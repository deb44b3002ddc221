"""`project-o status` prints the supervision tree that `GET /v1/status` reports."""

from __future__ import annotations

import io
import time

from rich.console import Console

from project_o.status_view import render_status


def _status() -> dict[str, object]:
    now = time.time()
    instance = {"instance_id": "main-1", "role": "main", "pid": 201, "version": "v1",
                "restarts": 2, "last_heartbeat": now, "rss_bytes": 2**21}
    return {
        "supervisor_pid": 100, "heart_pid": 99, "version": "v1", "restarts": 2,
        "instances": [instance],
        "vault": {"path": "/srv/vault", "last_sequence": 7, "last_checkpoint": None},
        "tree": {"id": "supervisor", "strategy": "rest_for_one", "children": [
            {"id": "vault", "status": "running", "restarts": 0},
            {"id": "agent", "status": "running", "restarts": 0, "version": "v1",
             "instance_restarts": 2, "max_restarts": 10, "max_seconds": 10.0, "children": [
                 {"id": "zygote", "pid": 200, "status": "running"},
                 {"id": "main", "pid": 201, "status": "running", "instance_id": "main-1"},
             ]},
            {"id": "evolution", "status": "running", "restarts": 0},
            {"id": "gateway", "status": "running", "restarts": 0},
        ]},
        "events": [{"ts": now, "kind": "takeover", "subject": "standby-2", "reason": "r"}],
    }


def test_the_tree_is_printed_part_by_part_with_the_agent_s_processes() -> None:
    out = io.StringIO()
    render_status(_status(), Console(file=out, width=120))
    text = out.getvalue()
    lines = [line.strip("│├└─ ") for line in text.splitlines()]
    assert lines[:2] == ["heart pid 99", "supervisor pid 100 — version v1, restarts 2"]
    assert "vault (running) /srv/vault: last sequence 7, last checkpoint None" in lines
    assert ("agent (running) version v1, 2 instance restarts (limit 10 in 10.0 s)"
            in lines)
    assert "zygote (running) pid 200" in lines
    assert any(line.startswith("main     pid 201") for line in lines)
    assert "evolution (running)" in lines and "gateway (running)" in lines
    assert "takeover" in text


def test_a_status_without_a_tree_still_shows_the_instances() -> None:
    status = _status()
    del status["tree"]
    out = io.StringIO()
    render_status(status, Console(file=out, width=120))
    assert "main     pid 201" in out.getvalue() and "/srv/vault" in out.getvalue()
