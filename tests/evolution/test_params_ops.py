"""Param declarations read statically, and the param mutation operators."""

from __future__ import annotations

import random

import pytest

from project_o.evolution.genome import Genome
from project_o.evolution.operators import (
    ParamGaussian,
    ParamSpec,
    ParamUniform,
    effective_params,
    param_specs,
)
from tests.evolution.samples import PLAIN, sample

SEEDS = range(60)


def test_declarations_are_read_from_literal_calls_only() -> None:
    specs = {spec.name: spec for spec in param_specs(sample())}
    assert list(specs) == ["threshold", "top_k", "mode", "verbose"]  # "limit" is not literal
    assert specs["threshold"] == ParamSpec("threshold", 0.5, low=0.0, high=1.0)
    assert specs["top_k"].kind == "int" and specs["threshold"].kind == "float"
    assert specs["mode"].choices == ("keyword", "vector", "hybrid")
    assert specs["mode"].kind == "choice" and specs["verbose"].kind == "bool"


def test_any_agent_variable_keywords_and_negative_bounds() -> None:
    source = '''
import project_o
bot = project_o.Agent("bot")
A = bot.param(name="alpha", default=-0.5, low=-1.5, high=0.0)
B = bot.param("beta", 3, high=10)
C = other.param("gamma", 1, low=0, high=2)     # not an agent
D = bot.param("alpha", 9.0, low=0.0, high=10.0)  # a second declaration: the first wins
E = bot.param("bad", 1, low=5, high=0)           # impossible bounds
'''
    specs = param_specs(Genome({"a.py": source}))
    assert specs == [ParamSpec("alpha", -0.5, low=-1.5, high=0.0), ParamSpec("beta", 3, high=10)]


def test_declarations_in_a_file_that_does_not_parse_are_ignored() -> None:
    genome = Genome({"a.py": "agent.param('x', 1, low=0, high=5)\n", "b.py": "def (:\n"})
    assert [s.name for s in param_specs(genome)] == ["x"]


def test_effective_params_fill_in_defaults() -> None:
    values = effective_params(sample(top_k=9, unknown=1))
    assert values == {"threshold": 0.5, "top_k": 9, "mode": "keyword", "verbose": False,
                      "unknown": 1}


@pytest.mark.parametrize("operator", [ParamGaussian(), ParamUniform(), ParamGaussian(count=3)])
def test_children_stay_within_their_declarations(operator: ParamGaussian) -> None:
    parent = sample(threshold=1.0, top_k=20)  # both at their upper bound: they must still move
    specs = param_specs(parent)
    moved: set[str] = set()
    for seed in SEEDS:
        child = operator.apply(parent, random.Random(seed))
        assert child is not None, operator.last_reason
        assert child.parents == (parent.id,) and child.operator == operator.name
        assert child.sources == parent.sources
        values = effective_params(child, specs)
        assert all(spec.allows(values[spec.name]) for spec in specs), values
        changes = child.details["changes"]
        assert 1 <= len(changes) <= operator.count
        for name, (old, new) in changes.items():
            assert old != new and values[name] == new
        moved |= set(changes)
    assert moved == {"threshold", "top_k", "mode", "verbose"}


@pytest.mark.parametrize("operator", [ParamGaussian(), ParamUniform()])
def test_same_seed_same_child(operator: ParamGaussian) -> None:
    parent = sample()
    children = [operator.apply(parent, random.Random(seed)) for seed in SEEDS]
    again = [operator.apply(parent, random.Random(seed)) for seed in SEEDS]
    assert all(children) and all(again)
    assert [c.id for c in children if c] == [c.id for c in again if c]
    assert len({c.id for c in children if c}) > 10  # and seeds matter (flips repeat, numbers don't)


def test_gaussian_steps_are_small_relative_to_the_range() -> None:
    operator, parent = ParamGaussian(sigma=0.05), sample()
    steps = []
    for seed in range(300):
        child = operator.apply(parent, random.Random(seed))
        assert child is not None
        if "threshold" in child.details["changes"]:
            old, new = child.details["changes"]["threshold"]
            steps.append(abs(new - old))
    assert steps and max(steps) < 0.3 and sum(steps) / len(steps) < 0.08


def test_ints_move_and_stay_ints() -> None:
    genome = Genome({"a.py": "agent.param('n', 3, low=0, high=4)\n"})
    for seed in SEEDS:
        for operator in (ParamGaussian(), ParamUniform()):
            child = operator.apply(genome, random.Random(seed))
            assert child is not None
            value = child.params["n"]
            assert isinstance(value, int) and value != 3 and 0 <= value <= 4


def test_unbounded_numbers_still_move() -> None:
    genome = Genome({"a.py": "agent.param('rate', 2.0)\nagent.param('n', 10)\n"})
    for seed in range(20):
        child = ParamUniform().apply(genome, random.Random(seed))
        assert child is not None and len(child.params) == 1


def test_going_back_to_the_default_gives_the_parents_id() -> None:
    genome = Genome({"a.py": "agent.param('flag', False)\n"})
    flipped = ParamGaussian().apply(genome, random.Random(0))
    assert flipped is not None and flipped.params == {"flag": True}
    back = ParamGaussian().apply(flipped, random.Random(0))
    assert back is not None and back.params == {} and back.id == genome.id


def test_no_mutable_param_means_no_child_and_a_reason() -> None:
    operator = ParamGaussian()
    assert operator.apply(Genome({"a.py": PLAIN}), random.Random(1)) is None
    assert "no mutable agent.param" in operator.last_reason
    pinned = Genome({"a.py": "agent.param('x', 1, low=1, high=1)\n"
                             "agent.param('m', 'a', choices=['a'])\n"})
    assert operator.apply(pinned, random.Random(1)) is None


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        ParamGaussian(sigma=0)
    with pytest.raises(ValueError):
        ParamUniform(count=0)


def test_the_defaults_type_decides_like_the_dsl() -> None:
    genome = Genome({"a.py": "agent.param('n', 2, low=0.5, high=4.5)\n"
                             "agent.param('t', 1.0, low=0, high=3)\n"
                             "agent.param('name', 'x')\n"})
    specs = {s.name: s for s in param_specs(genome)}
    assert specs["n"].kind == "int" and specs["t"].kind == "float"
    assert specs["t"].allows(2) and not specs["n"].allows(2.0) and specs["name"].allows("y")
    for seed in range(40):
        for operator in (ParamGaussian(sigma=0.5), ParamUniform()):
            child = operator.apply(genome, random.Random(seed))
            assert child is not None and set(child.details["changes"]) <= {"n", "t"}
            if "n" in child.params:
                assert child.params["n"] in (1, 3, 4)


def test_rounding_never_crosses_an_odd_bound() -> None:
    genome = Genome({"a.py": "agent.param('x', 0.1234561, low=0.1234560, high=0.1234567)\n"})
    spec = param_specs(genome)[0]
    for seed in range(40):
        for operator in (ParamGaussian(sigma=0.9), ParamUniform()):
            child = operator.apply(genome, random.Random(seed))
            if child is not None:
                assert spec.allows(child.params["x"]), child.params
