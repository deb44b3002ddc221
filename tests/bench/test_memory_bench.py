"""Smoke test of ``project-o bench memory``: a tiny run, a real vault, no timing asserted."""

from __future__ import annotations

import pytest

from project_o.bench import BENCHMARKS, load, memory
from project_o.bench.report import BaselineMissing


def _quiet(_: str) -> None:
    pass


def test_memory_benchmark_is_registered() -> None:
    assert BENCHMARKS["memory"] == "project_o.bench.memory"
    assert load("memory") is memory.run


def test_a_missing_wrk_stops_the_run_before_anything_is_measured(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def no_wrk() -> str:
        raise BaselineMissing("wrk is not installed")

    def measured(*args: object, **kwargs: object) -> None:
        raise AssertionError("measured before its last part's baseline was checked")

    monkeypatch.setattr(memory, "ensure_wrk", no_wrk)
    monkeypatch.setattr(memory, "run_with", measured)
    with pytest.raises(BaselineMissing):
        memory.run(True, _quiet)


def test_tiny_run_reports_rows_targets_and_a_faithful_replay() -> None:
    report = memory.run_with([600], durable=40, calls=25, quick=True, progress=_quiet)
    measures = [row["measure"] for row in report.rows]
    assert measures == ["remember, durable (sync WAL)", "remember, in memory (no WAL)",
                        "recall k=5, 600", "recall k=5 where=, 600", "search k=5, 600"]
    assert all(row["p50 ms"] > 0 and row["calls"] > 0 for row in report.rows)
    targets = {t.name: t for t in report.targets}
    assert targets["replayed store = live store"].met
    assert targets["recall@5 store / exact at 600"].measured == 1.0  # exact below 20k
    assert "recall p95 at 600 (ms)" in targets
    assert any("labelled recall@5" in note for note in report.notes)
    assert report.to_dict()["name"] == "memory"
