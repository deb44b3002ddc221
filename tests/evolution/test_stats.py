"""The always-valid sequential test, checked by simulation with seeded data."""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable

import pytest

from project_o.errors import InvalidArgument
from project_o.evolution.stats import (
    BASELINE,
    BETTER,
    CANDIDATE,
    CONTINUE,
    EQUAL,
    WORSE,
    SequentialTest,
)

Draw = Callable[[random.Random], float]
RUNS = 200
CLEAR_BUDGET = 500  # target: clear differences decided within 500 per arm (docs/design.md, "Targets")


def _run(seed: int, baseline: Draw, candidate: Draw, **options: object) -> SequentialTest:
    rng = random.Random(seed)
    test = SequentialTest("metric", **options)  # type: ignore[arg-type]
    while test.decision() == CONTINUE:
        test.add(BASELINE, baseline(rng))
        test.add(CANDIDATE, candidate(rng))
    return test


def _outcomes(baseline: Draw, candidate: Draw, runs: int = RUNS, **options: object
              ) -> tuple[Counter[str], list[int]]:
    tests = [_run(seed, baseline, candidate, **options) for seed in range(runs)]
    return Counter(t.decision() for t in tests), [t.summary()["n"][CANDIDATE] for t in tests]


def test_a_clearly_faster_candidate_is_better_within_500_samples() -> None:
    # latency in ms: lower is better; a 15% improvement with a wide spread
    decisions, n = _outcomes(lambda r: r.gauss(100, 30), lambda r: r.gauss(85, 30),
                             higher_is_better=False)
    assert decisions[BETTER] >= 0.95 * RUNS
    assert sorted(n)[int(0.95 * RUNS)] <= CLEAR_BUDGET


def test_a_clearly_faster_candidate_clears_a_five_percent_margin() -> None:
    decisions, n = _outcomes(lambda r: r.gauss(100, 30), lambda r: r.gauss(70, 30),
                             higher_is_better=False, margin=0.05)
    assert decisions[BETTER] >= 0.95 * RUNS
    assert sorted(n)[int(0.95 * RUNS)] <= CLEAR_BUDGET


def test_a_real_but_small_speed_up_is_not_better_beyond_a_margin() -> None:
    # 2% faster with little noise: significant, but not the 5% a promotion asks for
    fast, slow = (lambda r: r.gauss(98, 2)), (lambda r: r.gauss(100, 2))
    without, _ = _outcomes(slow, fast, runs=50, higher_is_better=False)
    within, _ = _outcomes(slow, fast, runs=50, higher_is_better=False, margin=0.05)
    assert without[BETTER] == 50
    assert within == Counter({EQUAL: 50})


def test_a_margin_never_hides_harm() -> None:
    decisions, _ = _outcomes(lambda r: r.gauss(100, 2), lambda r: r.gauss(102, 2), runs=50,
                             higher_is_better=False, margin=0.05)
    assert decisions == Counter({WORSE: 50})


def test_a_clearly_worse_error_rate_is_worse_within_500_samples() -> None:
    decisions, n = _outcomes(lambda r: float(r.random() < 0.02), lambda r: float(r.random() < 0.12),
                             kind="bernoulli", higher_is_better=False)
    assert decisions[WORSE] >= 0.95 * RUNS
    assert sorted(n)[int(0.95 * RUNS)] <= CLEAR_BUDGET


def test_worse_feedback_is_worse() -> None:
    decisions, _ = _outcomes(lambda r: r.choice([-1, 0, 1, 1]), lambda r: r.choice([-1, -1, 0, 1]),
                             runs=50)
    assert decisions[WORSE] >= 48


@pytest.mark.parametrize("kind, draw", [
    ("mean", lambda r: r.gauss(100, 30)),
    ("mean", lambda r: r.lognormvariate(3, 1)),  # skewed, like real latency
    ("bernoulli", lambda r: float(r.random() < 0.05)),
])
def test_an_equal_candidate_is_rarely_called_better(kind: str, draw: Draw) -> None:
    alpha = 0.05
    decisions, n = _outcomes(draw, draw, kind=kind, alpha=alpha, max_samples=400)
    assert decisions[BETTER] <= alpha * RUNS
    assert decisions[BETTER] + decisions[WORSE] <= 1.5 * alpha * RUNS
    assert decisions[EQUAL] > 0 and max(n) == 400


def test_nothing_is_decided_before_the_minimum_samples() -> None:
    test = SequentialTest("latency", higher_is_better=False)
    for i in range(49):
        assert test.add(BASELINE, 1000.0 + i) == CONTINUE
        assert test.add(CANDIDATE, 1.0 + i) == CONTINUE
    test.add(BASELINE, 1000.0)
    assert test.add(CANDIDATE, 1.0) == BETTER


def test_a_decision_stays_made() -> None:
    test = _run(0, lambda r: r.gauss(0, 1), lambda r: r.gauss(1, 1))
    assert test.decision() == BETTER
    for _ in range(300):
        test.add(CANDIDATE, -5.0)  # the candidate collapses afterwards
    assert test.decision() == BETTER and test.summary()["difference"] < 0


def test_equal_only_after_the_budget_for_both_arms() -> None:
    test = SequentialTest("x", min_samples=10, max_samples=20)
    rng = random.Random(1)
    for _ in range(100):
        test.add(BASELINE, rng.gauss(0, 1))
    for _ in range(19):
        test.add(CANDIDATE, rng.gauss(0, 1))
    assert test.decision() == CONTINUE
    assert test.add(CANDIDATE, 0.0) == EQUAL


def test_identical_constant_arms_do_not_divide_by_zero() -> None:
    test = SequentialTest("x", max_samples=60)
    for _ in range(60):
        test.add(BASELINE, 1.0)
        test.add(CANDIDATE, 1.0)
    assert test.decision() == EQUAL and test.summary()["p_value"] == 1.0


def test_summary_is_json_with_the_statistics() -> None:
    test = _run(3, lambda r: r.gauss(10, 2), lambda r: r.gauss(12, 2))
    summary = json.loads(json.dumps(test.summary()))
    assert summary["decision"] == BETTER and summary["n"][BASELINE] == summary["n"][CANDIDATE]
    assert summary["p_value"] <= summary["alpha"]
    assert summary["log_likelihood_ratio"] >= summary["threshold"]
    low, high = summary["confidence_sequence"]
    assert low > 0 and low < summary["difference"] < high
    assert summary["mean"][CANDIDATE] > summary["mean"][BASELINE]


def test_the_confidence_sequence_covers_the_true_difference_throughout() -> None:
    misses = 0
    for seed in range(100):
        rng, test = random.Random(seed), SequentialTest("x", max_samples=10**6)
        for _ in range(300):
            test.add(BASELINE, rng.gauss(0, 1))
            test.add(CANDIDATE, rng.gauss(0.3, 1))
            interval = test.summary()["confidence_sequence"]
            assert (interval is None) == (test.summary()["n"][BASELINE] < test.min_samples)
            if interval is not None and not interval[0] <= 0.3 <= interval[1]:
                misses += 1
                break
    assert misses <= 5  # time-uniform: at most alpha of the runs ever miss


def test_state_round_trip_resumes_exactly() -> None:
    def feed(test: SequentialTest, rng: random.Random, steps: int) -> None:
        for _ in range(steps):
            test.add(BASELINE, rng.gauss(0, 1))
            test.add(CANDIDATE, rng.gauss(0.25, 1))

    whole, rng_a = SequentialTest("x", higher_is_better=True, margin=0.1), random.Random(9)
    feed(whole, rng_a, 400)
    first, rng_b = SequentialTest("x", higher_is_better=True, margin=0.1), random.Random(9)
    feed(first, rng_b, 120)
    resumed = SequentialTest.from_state(json.loads(json.dumps(first.state())))
    feed(resumed, rng_b, 280)
    assert resumed.summary() == whole.summary()


@pytest.mark.parametrize("options", [{"kind": "median"}, {"alpha": 0.0}, {"alpha": 1.0},
                                     {"min_samples": 1}, {"min_samples": 60, "max_samples": 50},
                                     {"tau": 0.0}, {"margin": -0.1}, {"margin": 1.0}])
def test_bad_configuration_is_refused(options: dict[str, object]) -> None:
    with pytest.raises(InvalidArgument):
        SequentialTest("x", **options)  # type: ignore[arg-type]


def test_bad_samples_are_refused() -> None:
    test = SequentialTest("x")
    with pytest.raises(InvalidArgument, match="arm"):
        test.add("main", 1.0)
    with pytest.raises(InvalidArgument, match="finite"):
        test.add(BASELINE, float("nan"))
    with pytest.raises(InvalidArgument, match="0 or 1"):
        SequentialTest("errors", kind="bernoulli").add(BASELINE, 0.5)
    assert SequentialTest("errors", kind="bernoulli").add(BASELINE, True) == CONTINUE
    with pytest.raises(InvalidArgument):
        SequentialTest.from_state({"config": {}})
