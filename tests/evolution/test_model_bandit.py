"""The cost-aware UCB bandit over models, and the ledger that prices and limits their calls."""

from __future__ import annotations

import pytest

from project_o.errors import InvalidArgument
from project_o.evolution.llm_budget import Budget, LLMLedger, Price, Prices, parse_price
from project_o.evolution.model_bandit import ModelBandit
from project_o.llm.client import Usage


def _play(bandit: ModelBandit, rounds: int, reward: dict[str, float],
          cost: dict[str, float]) -> dict[str, int]:
    """Each round: choose, pay, and reward the chosen arm (deterministic rewards)."""
    for _ in range(rounds):
        name = bandit.choose()
        bandit.pulled(name, cost[name])
        bandit.rewarded(name, reward[name])
    return {name: int(s["pulls"]) for name, s in bandit.stats().items()}


def test_every_model_is_tried_first_in_order() -> None:
    bandit = ModelBandit(["a", "b", "c"])
    assert [_pull(bandit) for _ in range(3)] == ["a", "b", "c"]


def _pull(bandit: ModelBandit) -> str:
    name = bandit.choose()
    bandit.pulled(name, 1.0)
    return name


def test_the_better_model_is_drawn_most() -> None:
    pulls = _play(ModelBandit(["weak", "strong"], cost_weight=0.0), 200,
                  {"weak": 0.0, "strong": 1.0}, {"weak": 1.0, "strong": 1.0})
    assert pulls["strong"] > 150 and pulls["weak"] >= 2  # still explored now and then


def test_equal_models_cheaper_one_wins_and_the_cost_weight_decides_how_much() -> None:
    reward = {"cheap": 0.5, "dear": 0.5}
    cost = {"cheap": 0.001, "dear": 0.01}
    blind = _play(ModelBandit(["dear", "cheap"], cost_weight=0.0), 200, reward, cost)
    weighed = _play(ModelBandit(["dear", "cheap"], cost_weight=0.5), 200, reward, cost)
    assert abs(blind["dear"] - blind["cheap"]) <= 1
    assert weighed["cheap"] > 2 * weighed["dear"]


def test_a_better_but_dearer_model_still_wins_when_worth_its_price() -> None:
    reward = {"cheap": 0.2, "dear": 0.9}
    cost = {"cheap": 0.001, "dear": 0.01}
    pulls = _play(ModelBandit(["cheap", "dear"], cost_weight=0.3), 200, reward, cost)
    assert pulls["dear"] > pulls["cheap"]
    pulls = _play(ModelBandit(["cheap", "dear"], cost_weight=2.0), 200, reward, cost)
    assert pulls["cheap"] > pulls["dear"]


def test_state_round_trips_and_gives_the_same_next_choices() -> None:
    bandit = ModelBandit(["a", "b"])
    _play(bandit, 7, {"a": 1.0, "b": 0.0}, {"a": 2.0, "b": 1.0})
    copy = ModelBandit(["a", "b", "new"])
    copy.load(bandit.state())
    assert copy.stats()["a"] == bandit.stats()["a"]
    assert copy.choose() == "new"  # a model added since is tried first
    twin = ModelBandit(["a", "b"])
    twin.load(bandit.state())
    assert [_pull(twin) for _ in range(5)] == [_pull(bandit) for _ in range(5)]


def test_bad_bandit_input_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="at least one"):
        ModelBandit([])
    with pytest.raises(InvalidArgument, match="cost_weight"):
        ModelBandit(["a"], cost_weight=-1)
    with pytest.raises(InvalidArgument, match="unknown model"):
        ModelBandit(["a"]).pulled("b", 1.0)
    with pytest.raises(InvalidArgument, match="not a ModelBandit state"):
        ModelBandit(["a"]).load({"arms": {"a": [1]}})


# -- the ledger -----------------------------------------------------------------------


def test_prices_turn_usage_into_dollars() -> None:
    model, price = parse_price("gpt-4o-mini=0.15,0.60")
    assert model == "gpt-4o-mini" and price == Price(0.15, 0.60)
    assert Prices({model: price}).cost(model, Usage(1_000_000, 500_000)) == pytest.approx(0.45)
    assert Prices().cost("unpriced", Usage(10, 10)) == 0.0
    for bad in ("nomodel", "m=1", "m=a,b", "=1,2", "m=-1,2"):
        with pytest.raises(InvalidArgument):
            parse_price(bad)


def test_the_ledger_counts_per_model_and_stops_at_the_budget() -> None:
    ledger = LLMLedger(Prices({"a": Price(1.0, 1.0)}), Budget(max_cost=0.0003))
    assert ledger.record("a", Usage(100, 50, 150), ok=True) == pytest.approx(0.00015)
    ledger.record("b", Usage(), ok=False)
    ledger.child("a")
    assert ledger.exhausted() is None
    ledger.record("a", Usage(100, 50, 150), ok=True)
    assert "reached --max-cost" in (ledger.exhausted() or "")
    per_model = ledger.per_model()
    assert (per_model["a"].calls, per_model["a"].tokens, per_model["a"].children) == (2, 300, 1)
    assert (per_model["b"].calls, per_model["b"].failed) == (1, 1)
    restored = LLMLedger(ledger.prices, ledger.budget)
    restored.load(ledger.state())
    assert restored.state() == ledger.state() and restored.exhausted() == ledger.exhausted()


def test_lost_calls_count_against_the_token_budget() -> None:
    ledger = LLMLedger(budget=Budget(max_tokens=100))
    ledger.record("a", Usage(40, 20, 60), ok=True)
    assert ledger.exhausted() is None
    ledger.lost.prompt_tokens = 40
    assert "--max-tokens 100" in (ledger.exhausted() or "")
    with pytest.raises(InvalidArgument):
        Budget(max_cost=float("nan"))
