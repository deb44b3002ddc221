"""Perception fed by the metrics: what it counts, and when it stays quiet."""

from __future__ import annotations

from project_o.evolution.perception import HealthMonitor, Intent, Thresholds
from project_o.supervisor.events import EventLog
from project_o.supervisor.metrics import SupervisorMetrics
from project_o.supervisor.perceiving import Perception

THRESHOLDS = Thresholds(error_rate=0.2, min_samples=10, window=20, min_feedback_samples=3)


def wired(busy: bool = False) -> tuple[SupervisorMetrics, EventLog, list[Intent]]:
    metrics, events, acted = SupervisorMetrics(), EventLog(), []
    perception = Perception(HealthMonitor(THRESHOLDS, autonomy="auto"), events,
                            act=acted.append, busy=lambda: busy)
    metrics.subscribe(perception.observe)
    return metrics, events, acted


def test_failed_requests_counted_by_the_metrics_raise_an_error_intent() -> None:
    metrics, events, acted = wired()
    for n in range(10):
        metrics.observe_request("v1", "main", "failed" if n % 2 else "ok", 0.001, "RequestFailed")
    assert [i.metric for i in acted] == ["error_rate"]
    assert acted[0].version == "v1" and acted[0].action == "start"
    assert [e["kind"] for e in events.recent()] == ["intent"]


def test_requests_no_instance_took_say_nothing_about_the_version() -> None:
    metrics, _, acted = wired()
    for _ in range(30):
        metrics.observe_request("v1", "main", "unavailable", 0.001, "NoInstanceAvailable")
        metrics.observe_request("v1", "main", "cancelled", 0.001)
    assert acted == []


def test_bad_feedback_raises_a_feedback_intent() -> None:
    metrics, _, acted = wired()
    for _ in range(3):
        metrics.observe_feedback("v1", -1.0)
    assert [i.metric for i in acted] == ["mean_feedback"]


def test_while_an_experiment_routes_traffic_perception_stays_quiet() -> None:
    metrics, events, acted = wired(busy=True)
    for _ in range(20):
        metrics.observe_request("v1", "main", "failed", 0.001, "RequestFailed")
        metrics.observe_feedback("v1", -1.0)
    assert acted == [] and events.recent() == []
