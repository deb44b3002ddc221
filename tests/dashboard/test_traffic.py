"""Rates and quantiles from two real Prometheus scrapes of the supervisor's metrics."""

from __future__ import annotations

import pytest

from project_o.dashboard.traffic import TrafficWindow, parse_scrape, quantile
from project_o.supervisor.metrics import SupervisorMetrics


def test_quantile_interpolates_within_a_bucket() -> None:
    buckets = {0.1: 0.0, 0.2: 10.0, float("inf"): 10.0}
    assert quantile(0.5, buckets) == pytest.approx(0.15)
    assert quantile(0.99, buckets) == pytest.approx(0.199)
    assert quantile(0.5, {0.1: 0.0, float("inf"): 0.0}) is None
    assert quantile(0.5, {}) is None


def test_two_scrapes_give_rates_errors_and_latency_per_version_and_role() -> None:
    meter = SupervisorMetrics()
    window = TrafficWindow()
    assert window.point(parse_scrape(meter.render().body.decode(), 10.0)) is None
    for _ in range(30):
        meter.observe_request("v1", "main", "ok", 0.004)
    for _ in range(10):
        meter.observe_request("v1", "main", "failed", 0.004)
    for _ in range(5):
        meter.observe_request("v2", "shadow", "ok", 0.3)
    point = window.point(parse_scrape(meter.render().body.decode(), 12.0))
    assert point is not None
    series = {(s["version"], s["role"]): s for s in point["series"]}
    main, shadow = series["v1", "main"], series["v2", "shadow"]
    assert main["rps"] == pytest.approx(20.0)
    assert main["error_rate"] == pytest.approx(0.25)
    assert 2.5 <= main["p50_ms"] <= 5.0  # inside the (2.5 ms, 5 ms] bucket
    assert shadow["rps"] == pytest.approx(2.5)
    assert 250.0 <= shadow["p99_ms"] <= 500.0
    # nothing happened since: no traffic, no latency
    quiet = window.point(parse_scrape(meter.render().body.decode(), 13.0))
    assert quiet is not None
    assert all(s["rps"] == 0 and s["p50_ms"] is None for s in quiet["series"])


def test_one_version_in_two_roles_keeps_two_latencies() -> None:
    meter = SupervisorMetrics()
    window = TrafficWindow()
    window.point(parse_scrape(meter.render().body.decode(), 1.0))
    for _ in range(20):
        meter.observe_request("v1", "main", "ok", 0.004)
        meter.observe_request("v1", "canary", "ok", 0.3)
    point = window.point(parse_scrape(meter.render().body.decode(), 2.0))
    assert point is not None
    series = {(s["version"], s["role"]): s for s in point["series"]}
    assert 2.5 <= series["v1", "main"]["p99_ms"] <= 5.0
    assert 250.0 <= series["v1", "canary"]["p50_ms"] <= 500.0
