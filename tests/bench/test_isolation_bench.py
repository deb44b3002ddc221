"""``bench isolation`` measures both arms in one run and counts the probes (small sizes)."""

from __future__ import annotations

import asyncio

import pytest

from project_o.bench import BENCHMARKS, isolation


def test_isolation_is_registered() -> None:
    assert BENCHMARKS["isolation"] == "project_o.bench.isolation"


@pytest.mark.slow
def test_fork_to_ready_is_measured_with_the_sandbox_on_and_off() -> None:
    figures = asyncio.run(isolation._fork_to_ready(forks=2 * isolation.BLOCK, starts=1))
    by_name = {row["what"]: row for row in figures["rows"]}
    for arm in ("on", "off"):
        assert by_name[f"fork-to-ready, sandbox {arm}"]["n"] == 2 * isolation.BLOCK
        assert by_name[f"fork-to-ready, sandbox {arm}"]["p99 ms"] > 0
        assert by_name[f"zygote start, sandbox {arm}"]["n"] == 1
    assert "seccomp" in figures["layers"]["active"]


@pytest.mark.slow
def test_no_probe_of_the_hostile_agent_succeeds() -> None:
    attempts, succeeded, notes = isolation._probes()
    assert attempts >= 20
    assert succeeded == 0, notes


def test_the_parent_kill_counts_unless_the_zygote_survived_it() -> None:
    output = {"succeeded": 1, "detail": ["ESRCH", "ESRCH", "succeeded: 7"]}
    assert isolation.signal_succeeded(output, zygote_alive=True) == 0  # the signal was dropped
    assert isolation.signal_succeeded(output, zygote_alive=False) == 1
    refused = {"succeeded": 1, "detail": ["succeeded: 1", "ESRCH", "EPERM"]}
    assert isolation.signal_succeeded(refused, zygote_alive=True) == 1
