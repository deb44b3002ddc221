"""Smoke test of ``project-o bench wal --quick``: it runs and reports; no figure is asserted."""

from __future__ import annotations

import pytest

from project_o.bench import load
from project_o.bench import wal as wal_bench


@pytest.mark.slow
def test_quick_wal_bench_reports_both_systems_and_the_three_targets() -> None:
    messages: list[str] = []
    report = load("wal")(True, messages.append)
    assert load("wal") is wal_bench.run
    assert report.name == "wal" and report.quick
    seen = {(row["system"], row["mode"], row["writers"]) for row in report.rows}
    assert {("wal", "sync", 1), ("wal", "sync", 64), ("wal", "batch", 64)} <= seen
    assert {("sqlite", "per-connection", 1), ("sqlite", "shared-connection", 64)} <= seen
    assert {("wal sealed", "sync", 1), ("wal sealed", "sync", 64), ("wal sealed", "batch", 64)} <= seen
    assert all(row["entries/s"] > 0 for row in report.rows)
    assert all(row["× plain"] > 0 for row in report.rows if row["system"] == "wal sealed")
    assert [t.name for t in report.targets] == [
        "sync, 64 writers: entries/s",
        "sync, 64 writers: × SQLite",
        "sync, 1 writer: × SQLite",
    ]
    assert any("fsync" in note for note in report.notes)
    assert any("sealed (AES-256-GCM" in note for note in report.notes)
    assert messages  # progress was reported
