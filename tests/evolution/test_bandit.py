"""Operator selection by Thompson sampling."""

from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from project_o.errors import InvalidArgument
from project_o.evolution.bandit import OperatorBandit

NAMES = ["mut_param_gauss", "mut_ast_constant", "cx_functions"]
SUCCESS = {"mut_param_gauss": 0.1, "mut_ast_constant": 0.6, "cx_functions": 0.2}


def _play(bandit: OperatorBandit, rng: random.Random, rounds: int) -> list[str]:
    chosen = []
    for _ in range(rounds):
        name = bandit.choose(rng)
        bandit.record(name, rng.random() < SUCCESS[name])
        chosen.append(name)
    return chosen


def test_the_operator_that_works_is_chosen_most() -> None:
    for seed in range(5):
        chosen = _play(OperatorBandit(NAMES), random.Random(seed), 400)
        late = Counter(chosen[200:])
        assert late.most_common(1)[0][0] == "mut_ast_constant"
        assert late["mut_ast_constant"] > 120


def test_same_seed_same_choices() -> None:
    assert _play(OperatorBandit(NAMES), random.Random(4), 100) == \
        _play(OperatorBandit(NAMES), random.Random(4), 100)


def test_untried_operators_are_all_explored() -> None:
    chosen = Counter(OperatorBandit(NAMES).choose(random.Random(s)) for s in range(300))
    assert set(chosen) == set(NAMES) and min(chosen.values()) > 60


def test_state_round_trip_continues_identically() -> None:
    rng_a, rng_b = random.Random(8), random.Random(8)
    whole = OperatorBandit(NAMES, decay=0.99)
    first = _play(whole, rng_a, 50) + _play(whole, rng_a, 50)
    part = OperatorBandit(NAMES, decay=0.99)
    head = _play(part, rng_b, 50)
    resumed = OperatorBandit.load(json.loads(json.dumps(part.state())))
    assert head + _play(resumed, rng_b, 50) == first
    assert resumed.stats() == whole.stats()


def test_load_adds_new_operators_and_keeps_old_counts() -> None:
    bandit = OperatorBandit(NAMES)
    bandit.record("cx_functions", True)
    loaded = OperatorBandit.load(bandit.state(), names=["llm_rewrite", "cx_functions"])
    assert loaded.names == [*NAMES, "llm_rewrite"]
    assert loaded.stats()["cx_functions"]["successes"] == 1.0
    assert loaded.stats()["llm_rewrite"] == {"successes": 0.0, "failures": 0.0, "mean": 0.5}


def test_choose_among_a_subset() -> None:
    bandit = OperatorBandit(NAMES)
    for _ in range(50):
        bandit.record("mut_ast_constant", True)
    rng = random.Random(0)
    assert {bandit.choose(rng, among=["cx_functions", "mut_param_gauss"]) for _ in range(50)} \
        <= {"cx_functions", "mut_param_gauss"}
    with pytest.raises(InvalidArgument):
        bandit.choose(rng, among=["nope"])


def test_decay_forgets_old_outcomes() -> None:
    bandit = OperatorBandit(["a", "b"], decay=0.5)
    for _ in range(10):
        bandit.record("a", True)
    bandit.record("b", False)
    assert bandit.stats()["a"]["successes"] < 1.0 + 1e-9


def test_mistakes_are_refused() -> None:
    with pytest.raises(InvalidArgument):
        OperatorBandit([])
    with pytest.raises(InvalidArgument):
        OperatorBandit(NAMES, prior=(0.0, 1.0))
    with pytest.raises(InvalidArgument):
        OperatorBandit(NAMES, decay=0.0)
    with pytest.raises(InvalidArgument, match="unknown operator"):
        OperatorBandit(NAMES).record("llm_rewrite", True)
    with pytest.raises(InvalidArgument):
        OperatorBandit.load({"arms": {}})
