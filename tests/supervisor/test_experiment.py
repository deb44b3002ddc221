"""An experiment's bookkeeping: experiment specs, the decisions its tests reach, the record."""

from __future__ import annotations

import random

import pytest

from project_o.errors import InvalidArgument
from project_o.supervisor.experiment import Experiment, ExperimentSpec, Verdict


def spec(**body: object) -> ExperimentSpec:
    return ExperimentSpec.from_body({"kind": "canary", "candidate": {"source": "x"}, **body})


def test_spec_defaults_are_the_seeds() -> None:
    made = spec()
    assert (made.share, made.stages, made.min_samples, made.mode) == (
        0.1, (0.1, 0.5, 1.0), 50, "mirror")


@pytest.mark.parametrize("body", [
    {"kind": "nope"}, {"candidate": {}}, {"candidate": {"source": "a", "operator": "b"}},
    {"share": 0.0}, {"stages": [0.5, 0.1]}, {"min_samples": 10, "max_samples": 5},
    {"metric": "vibes"}, {"latency_margin": -0.01}, {"latency_margin": 1.0},
])
def test_spec_refuses_what_it_cannot_run(body: dict[str, object]) -> None:
    with pytest.raises(InvalidArgument):
        spec(**body)


def run(candidate_latency: float, samples: int = 60, **body: object) -> Experiment:
    rng = random.Random(7)
    experiment = Experiment("e1", spec(min_samples=20, max_samples=samples, **body), "c", "b")
    for _ in range(samples):
        experiment.record("baseline", rng.gauss(10.0, 1.0), False)
        experiment.record("candidate", rng.gauss(candidate_latency, 1.0), False)
    return experiment


def test_a_faster_candidate_is_better_on_latency() -> None:
    assert run(5.0).better() == ["latency"]
    assert run(5.0).worse() is None


def test_a_slightly_faster_candidate_is_not_better_within_the_latency_margin() -> None:
    # 3% faster: a fresh process can be that much faster than a long-running main
    assert run(9.7, samples=400).better() == []
    assert run(9.7, samples=400).no_improvement()
    assert run(9.7, samples=400, latency_margin=0.0).better() == ["latency"]


def test_a_slower_candidate_is_worse_on_latency() -> None:
    assert run(15.0).worse() == "latency"


def test_an_equal_candidate_is_no_improvement() -> None:
    experiment = run(10.0, samples=60)
    assert experiment.worse() is None and experiment.better() == []
    assert experiment.no_improvement()


def test_errors_and_disagreement_count_against_the_candidate() -> None:
    experiment = Experiment("e2", ExperimentSpec.from_body(
        {"kind": "shadow", "candidate": {"source": "x"}, "min_samples": 20}), "c", "b")
    for _ in range(40):
        experiment.record_agreement(False)
    assert experiment.worse() == "agreement"


def test_the_record_says_why() -> None:
    experiment = run(15.0)
    experiment.finish(Verdict.rollback("worse on latency"))
    shown = experiment.to_dict()
    assert shown["stage"] == "done" and shown["reason"] == "worse on latency"
    assert shown["timeline"][-1]["event"] == "rollback"
    assert experiment.stats()["statistics"]["latency"]["decision"] == "worse"
