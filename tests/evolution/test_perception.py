"""The health monitor, fed synthetic observations with a fake clock."""

from __future__ import annotations

import random

import pytest

from project_o.errors import InvalidArgument
from project_o.evolution.perception import (
    AUTO,
    ERRORS,
    FEEDBACK,
    LATENCY,
    MEMORY,
    OFF,
    PROPOSE,
    HealthMonitor,
    Thresholds,
)

SMALL = Thresholds(p95_latency_ms=100.0, error_rate=0.1, memory_growth=0.5,
                   min_feedback=-0.2, window=40, min_samples=20, min_feedback_samples=5,
                   cooldown_s=60.0)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def _monitor(clock: Clock, autonomy: str = PROPOSE) -> HealthMonitor:
    return HealthMonitor(SMALL, autonomy=autonomy, clock=clock)


def _feed(monitor: HealthMonitor, n: int, latency: float = 10.0, **kw: object) -> list:
    intents = []
    for _ in range(n):
        intents += monitor.observe("v1", latency, **kw)  # type: ignore[arg-type]
    return intents


def test_healthy_traffic_raises_nothing(clock: Clock) -> None:
    monitor = _monitor(clock)
    rng = random.Random(7)
    intents = []
    for i in range(500):
        intents += monitor.observe("v1", rng.uniform(5, 90), error=rng.random() < 0.02,
                                   rss_bytes=100_000_000 + rng.randrange(1_000_000))
        if i % 10 == 0:
            intents += monitor.observe_feedback("v1", rng.uniform(0.0, 1.0))
    assert intents == []
    health = monitor.health("v1")
    assert health["requests"] == SMALL.window
    assert health[LATENCY] < 100.0


def test_slow_requests_raise_a_latency_intent_once_the_window_is_trusted(clock: Clock) -> None:
    monitor = _monitor(clock)
    assert _feed(monitor, SMALL.min_samples - 1, latency=500.0) == []  # too few samples yet

    (intent,) = _feed(monitor, 1, latency=500.0)

    assert intent.metric == LATENCY and intent.observed == 500.0
    assert intent.threshold == 100.0 and intent.version == "v1" and intent.handler == "handle"
    assert intent.action == "propose" and intent.samples == SMALL.min_samples
    assert "slow" in intent.hypothesis and "500.0 ms" in intent.hypothesis
    assert intent.experiment_body({"source": "x"})["metric"] == "latency"


def test_p95_ignores_a_few_outliers(clock: Clock) -> None:
    monitor = _monitor(clock)
    # 1 slow request in 40 is the 97.5th percentile: p95 stays fast
    intents = _feed(monitor, 39, latency=10.0) + _feed(monitor, 1, latency=5000.0)
    assert intents == []
    # three of 40 (7.5%) put the p95 on a slow one
    assert [i.metric for i in _feed(monitor, 2, latency=5000.0)] == [LATENCY]


def test_a_p95_at_the_threshold_is_not_over_it(clock: Clock) -> None:
    monitor = _monitor(clock)
    assert _feed(monitor, 40, latency=100.0) == []  # every sample at the threshold: not over
    assert [i.metric for i in _feed(monitor, 2, latency=100.5)] == []  # 2 of 40 over: 95th ok
    assert [i.metric for i in _feed(monitor, 1, latency=100.5)] == [LATENCY]


def test_cooldown_stops_repeats_until_it_expires(clock: Clock) -> None:
    monitor = _monitor(clock)
    assert len(_feed(monitor, 60, latency=500.0)) == 1
    clock.now += SMALL.cooldown_s - 1
    assert _feed(monitor, 10, latency=500.0) == []
    clock.now += 2
    assert [i.metric for i in _feed(monitor, 1, latency=500.0)] == [LATENCY]


def test_cooldown_is_per_metric_and_per_version(clock: Clock) -> None:
    monitor = _monitor(clock)
    first = _feed(monitor, SMALL.min_samples, latency=500.0)
    both = _feed(monitor, 10, latency=500.0, error=True)
    assert [i.metric for i in first] == [LATENCY]
    assert [i.metric for i in both] == [ERRORS]  # latency still cooling down
    other = []
    for _ in range(SMALL.min_samples):
        other += monitor.observe("v2", 500.0)
    assert [(i.version, i.metric) for i in other] == [("v2", LATENCY)]


def test_error_rate_over_threshold(clock: Clock) -> None:
    monitor = _monitor(clock)
    rng = random.Random(3)
    intents = []
    for _ in range(200):
        intents += monitor.observe("v1", 10.0, error=rng.random() < 0.3)
    (intent,) = intents
    assert intent.metric == ERRORS and intent.observed > 0.1
    assert "fails" in intent.hypothesis


def test_growing_memory_is_a_leak_but_a_flat_one_is_not(clock: Clock) -> None:
    flat, leaking = _monitor(clock), _monitor(clock)
    intents_flat, intents_leak = [], []
    for i in range(SMALL.window):
        intents_flat += flat.observe("v1", 10.0, rss_bytes=200_000_000 + (i % 3) * 1000)
        intents_leak += leaking.observe("v1", 10.0, rss_bytes=100_000_000 + i * 5_000_000)
    assert intents_flat == []
    (intent,) = intents_leak
    assert intent.metric == MEMORY and intent.observed > 0.5
    assert "metric" not in intent.experiment_body({"operator": "params"})


def test_poor_feedback_raises_a_feedback_intent(clock: Clock) -> None:
    monitor = _monitor(clock, autonomy=AUTO)
    scores = [-1.0, -0.5, 0.0, -1.0]
    assert [monitor.observe_feedback("v1", s) for s in scores] == [[], [], [], []]

    (intent,) = monitor.observe_feedback("v1", -0.5)

    assert intent.metric == FEEDBACK and intent.observed == pytest.approx(-0.6)
    assert intent.action == "start"  # autonomy auto: the supervisor starts it at once


def test_autonomy_off_raises_nothing_but_keeps_measuring(clock: Clock) -> None:
    monitor = _monitor(clock, autonomy=OFF)
    assert _feed(monitor, 60, latency=500.0) == []
    assert monitor.health("v1")[LATENCY] == 500.0
    monitor.set_autonomy(PROPOSE)
    assert [i.action for i in _feed(monitor, 1, latency=500.0)] == ["propose"]


def test_forget_drops_a_version(clock: Clock) -> None:
    monitor = _monitor(clock)
    _feed(monitor, 30)
    monitor.forget("v1")
    assert monitor.health("v1")["requests"] == 0
    assert monitor.health("v1")[LATENCY] is None


def test_bad_input_is_refused_with_a_clear_error(clock: Clock) -> None:
    monitor = _monitor(clock)
    with pytest.raises(InvalidArgument, match="latency_ms"):
        monitor.observe("v1", float("nan"))
    with pytest.raises(InvalidArgument, match="-1..1"):
        monitor.observe_feedback("v1", 2.0)
    with pytest.raises(InvalidArgument, match="autonomy"):
        HealthMonitor(autonomy="yolo")
    with pytest.raises(InvalidArgument, match="min_samples"):
        Thresholds(window=10, min_samples=20)
    with pytest.raises(InvalidArgument, match="error_rate"):
        Thresholds(error_rate=-0.1)


def test_intent_to_dict_round_trips_its_fields(clock: Clock) -> None:
    (intent,) = _feed(_monitor(clock), SMALL.min_samples, latency=500.0)
    data = intent.to_dict()
    assert data["metric"] == LATENCY and data["observed"] == 500.0 and data["at"] == 1000.0
    assert set(data) == {"hypothesis", "metric", "observed", "threshold", "version", "handler",
                         "action", "samples", "at"}
