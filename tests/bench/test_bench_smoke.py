"""Smoke tests of the recovery benchmark and others: tiny runs, real processes.

The overhead benchmark has its own, in test_overhead_bench.py.

No timing is asserted (figures belong to the benchmark reports); the tests
check that each run completes, kills what it must, and reports its rows,
targets and notes.
"""

from __future__ import annotations

import pytest

from project_o.bench import BENCHMARKS, load, overhead, recovery
from project_o.bench.agents.state_agent import agent as state_agent
from project_o.bench.agents.state_agent import expected_digest


def _quiet(_: str) -> None:
    pass


def test_both_benchmarks_are_registered() -> None:
    assert BENCHMARKS["recovery"] == "project_o.bench.recovery"
    assert BENCHMARKS["overhead"] == "project_o.bench.overhead"
    assert load("recovery") is recovery.run
    assert load("overhead") is overhead.run


def test_state_agent_digest_matches_what_the_client_expects() -> None:
    client = state_agent.test_client()
    client.call({"do": "fill", "count": 5, "size": 100, "seed": 3})
    answer = client.call({"do": "check"})
    expected = expected_digest(5, 100, 3)
    assert {k: answer[k] for k in expected} == expected
    assert expected != expected_digest(5, 100, 4)


@pytest.mark.slow
def test_recovery_tiny_run_survives_kills_and_reports() -> None:
    config = recovery.Config(size=100_000, standby=True, kills=2)
    report = recovery.run_configs([config], quick=True, progress=_quiet)
    (row,) = report.rows
    assert "error" not in row, row
    assert row["kills"] == 2
    assert row["checkpointed"] is True
    assert row["lost"] == 0 and row["wrong state"] == 0
    assert row["p50 ms"] is not None and row["p50 ms"] > 0
    assert {t.name for t in report.targets} >= {"recovery p99 with standby, 0.1 MB"}


def test_fmin_quick_run_compares_with_openevolve() -> None:
    report = load("fmin")(True, _quiet)
    ours, theirs = report.rows
    assert ours["runs"] == 2 and theirs["system"].startswith("openevolve")
    # An evolved search lands in the global basin: within 0.1 of -1.519 in the mean.
    assert 0 <= ours["median_gap"] < 0.1 and ours["median_distance"] >= 0
    assert theirs["median_gap"] == pytest.approx(1 / 0.990 - 1)
    assert [t.name for t in report.targets] == [
        "median |mean value - minimum| vs OpenEvolve",
        "median mean distance to the minimum vs OpenEvolve"]


def test_circle_packing_quick_run_reports_a_valid_packing_against_the_published_ones() -> None:
    report = load("circle-packing")(True, _quiet)
    seed, evolved, alpha, openevolve = report.rows
    assert seed["valid_zero_tolerance"] and 0 < seed["best_sum_of_radii"] < 2.7
    # the seed is in the first generation and the GA keeps elites: never worse than it
    assert evolved["valid_zero_tolerance"]
    assert evolved["best_sum_of_radii"] >= seed["best_sum_of_radii"]
    assert evolved["evaluations"] > 1 and evolved["wall_s"] > 0
    assert (alpha["best_sum_of_radii"], openevolve["best_sum_of_radii"]) == (2.635, 2.634)
    assert [t.name for t in report.targets] == ["best sum of radii vs OpenEvolve",
                                                "best sum of radii vs AlphaEvolve"]
