"""Function-level and param-level crossover between two parents."""

from __future__ import annotations

import random

import pytest

from project_o.evolution.genome import Genome
from project_o.evolution.operators import FunctionCrossover, ParamCrossover, evolvables, param_specs
from project_o.evolution.operators.evolvables import find_evolvables, segment
from tests.evolution.samples import AGENT, AGENT_B, sample, sample_b

THREE = '''# three evolvable functions
@agent.evolvable
def f(x):
    return x + 1


@agent.evolvable
def g(x):
    return x * 2  # twice


@agent.evolvable
def h(x):
    return x - 3
'''
THREE_B = (THREE.replace("x + 1", "x + 10").replace("x * 2  # twice", "x * 20  # lots")
           .replace("x - 3", "x - 30"))


def _segments(genome: Genome) -> dict[str, str]:
    return {fn.key: segment(genome.sources[fn.path], fn) for fn in find_evolvables(genome)}


def test_each_function_comes_from_one_parent_never_all_from_the_second() -> None:
    a, b = Genome({"m.py": THREE}), Genome({"m.py": THREE_B})
    mine, theirs = _segments(a), _segments(b)
    seen: set[tuple[str, ...]] = set()
    for seed in range(40):
        child = FunctionCrossover().apply(a, random.Random(seed), donors=[b])
        assert child is not None
        assert child.parents == (a.id, b.id) and child.operator == "cx_functions"
        compile(child.sources["m.py"], "m.py", "exec")
        got = _segments(child)
        from_b = tuple(k for k in got if got[k] == theirs[k])
        assert all(got[k] in (mine[k], theirs[k]) for k in got)
        assert 1 <= len(from_b) < 3 and sorted(from_b) == child.details["taken"]
        seen.add(from_b)
    assert len(seen) >= 4  # the choice really is random
    assert child.sources["m.py"].startswith("# three evolvable functions\n")


def test_copied_functions_keep_their_comments() -> None:
    a, b = Genome({"m.py": THREE}), Genome({"m.py": THREE_B})
    for seed in range(20):
        child = FunctionCrossover().apply(a, random.Random(seed), donors=[b])
        assert child is not None
        if "m.py:g" in child.details["taken"]:
            assert "return x * 20  # lots" in child.sources["m.py"]
            return
    pytest.fail("g was never taken from the second parent in 20 seeds")


def test_a_crossed_child_declares_what_a_fresh_read_finds() -> None:
    a, b = Genome({"m.py": THREE}), Genome({"m.py": THREE_B})
    for seed in range(10):
        child = FunctionCrossover().apply(a, random.Random(seed), donors=[b])
        assert child is not None
        assert find_evolvables(child) == list(evolvables._find(child.sources))


def test_function_crossover_is_deterministic_per_seed() -> None:
    a, b = Genome({"m.py": THREE}), Genome({"m.py": THREE_B})
    ids = [FunctionCrossover().apply(a, random.Random(s), donors=[b]) for s in range(10)]
    again = [FunctionCrossover().apply(a, random.Random(s), donors=[b]) for s in range(10)]
    assert [c and c.id for c in ids] == [c and c.id for c in again]


def test_the_only_difference_cannot_make_a_new_child() -> None:
    # sample and sample_b differ in two functions: a child takes exactly one of them.
    child = FunctionCrossover().apply(sample(), random.Random(0), donors=[sample_b()])
    assert child is not None and child.id not in (sample().id, sample_b().id)
    one_off = Genome({"agent.py": AGENT.replace("* 2\n", "* 5\n")})
    operator = FunctionCrossover()
    assert operator.apply(sample(), random.Random(0), donors=[one_off]) is None
    assert "identical" in operator.last_reason


def test_crossover_needs_a_different_second_parent() -> None:
    for operator in (FunctionCrossover(), ParamCrossover()):
        assert operator.apply(sample(), random.Random(0)) is None
        assert "second" in operator.last_reason
        assert operator.apply(sample(), random.Random(0), donors=[sample()]) is None
    same_code = Genome({"agent.py": AGENT}, {"top_k": 3})
    operator = FunctionCrossover()
    assert operator.apply(sample(), random.Random(0), donors=[same_code]) is None
    assert "no evolvable function differs" in operator.last_reason


def test_param_crossover_mixes_values_within_the_declarations() -> None:
    a = sample(threshold=0.1, top_k=2, mode="vector")
    b = sample(threshold=0.9, top_k=15, verbose=True)
    a_values = {"threshold": 0.1, "top_k": 2, "mode": "vector", "verbose": False}
    b_values = {"threshold": 0.9, "top_k": 15, "mode": "keyword", "verbose": True}
    specs = {s.name: s for s in param_specs(a)}
    mixes = set()
    for seed in range(40):
        child = ParamCrossover().apply(a, random.Random(seed), donors=[b])
        assert child is not None and child.parents == (a.id, b.id)
        values = {**{n: s.default for n, s in specs.items()}, **child.params}
        assert all(values[n] in (a_values[n], b_values[n]) for n in specs)
        taken = child.details["taken"]
        assert 1 <= len(taken) < 4 and all(values[n] == b_values[n] for n in taken)
        assert "mode" not in child.params or child.params["mode"] != "keyword"  # defaults dropped
        mixes.add(tuple(sorted(taken)))
    assert len(mixes) >= 5


def test_param_crossover_skips_values_the_first_parent_does_not_allow() -> None:
    narrow = Genome({"a.py": "agent.param('x', 1, low=0, high=5)\nagent.param('y', 1)\n"})
    wide = Genome({"a.py": "agent.param('x', 1, low=0, high=50)\nagent.param('y', 1)\n"},
                  {"x": 40, "y": 7})
    for seed in range(10):
        child = ParamCrossover().apply(narrow, random.Random(seed), donors=[wide])
        assert child is not None and child.params == {"y": 7}


def test_the_second_parent_is_chosen_among_donors_with_the_rng() -> None:
    a = Genome({"m.py": THREE})
    other = THREE.replace("x - 3", "x - 4").replace("x + 1", "x + 7")
    donors = [Genome({"m.py": THREE_B}), Genome({"m.py": other})]
    children = [FunctionCrossover().apply(a, random.Random(s), donors=donors) for s in range(20)]
    chosen = {child.parents[1] for child in children if child is not None}
    assert chosen == {donors[0].id, donors[1].id}


def test_sample_parents_differ_where_expected() -> None:
    # Guards the fixtures the crossover tests rely on.
    assert AGENT != AGENT_B and set(_segments(sample())) == set(_segments(sample_b()))
