"""Offline AST mutation of @agent.evolvable functions."""

from __future__ import annotations

import ast
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from project_o.evolution.genome import Genome
from project_o.evolution.operators import (
    AST_OPERATORS,
    ConstantPerturbation,
    DonorSubtree,
    OperatorSwap,
    StatementDeletion,
    StatementDuplication,
    StatementReorder,
    ast_ops,
    evolvables,
    find_evolvables,
    params,
)
from project_o.evolution.operators.evolvables import segment
from tests.evolution.samples import AGENT, PLAIN, sample, sample_b

#: where ``tests.evolution.samples`` is importable from, for the child process
REPO_ROOT = Path(__file__).resolve().parents[2]

#: evolvable code using most of the grammar: methods, async, loops, try, f-strings,
#: match, walrus, lambdas, comprehensions, nested defs, global/nonlocal, yield
HARD = '''import asyncio
from project_o import Agent

bot = Agent("hard")
COUNT = 0


class Store:
    @bot.evolvable()
    def lookup(self, key, default=None, *, retries=2):
        """Find key."""
        for attempt in range(retries + 1):
            try:
                if (value := self.data.get(key)) is not None:
                    return value
            except KeyError as exc:
                print(f"miss {key!r} on {attempt}: {exc}")
                continue
            finally:
                self.calls = getattr(self, "calls", 0) + 1
        return default


@bot.evolvable
async def fetch(urls, limit=3.5):
    global COUNT
    results = [u.upper() for u in urls if len(u) > 2 and not u.startswith("#")]
    match results:
        case [first, *rest]:
            COUNT += len(rest) * 2
        case _:
            COUNT -= 1
    await asyncio.sleep(0)
    ranked = sorted(results, key=lambda u: (-len(u), u))[: int(limit)]
    return {"ranked": ranked, "ratio": COUNT / (len(urls) or 1), "ok": COUNT >= 0 or False}


@bot.evolvable
def counter(start=0):
    total = start

    def bump(by=1):
        nonlocal total
        total += by
        return total

    while total < 10:
        yield bump(2) ** 2 % 7
    del total


@bot.handler
def handle(ctx, request):  # not evolvable
    return request
'''

ALL = [cls() for cls in AST_OPERATORS]
GENOMES = [sample(), sample_b(), Genome({"hard.py": HARD}), Genome({"pkg/__init__.py": "",
                                                                    "pkg/agent.py": AGENT})]


def _apply(operator: object, genome: Genome, seed: int) -> Genome | None:
    donors = [g for g in GENOMES if g.id != genome.id][:2]
    return operator.apply(genome, random.Random(seed), donors=donors)  # type: ignore[attr-defined]


def _untouched_outside_evolvables(parent: Genome, child: Genome) -> None:
    """Every line outside the mutated function is byte-for-byte the parent's."""
    for path, text in parent.sources.items():
        if child.sources[path] == text:
            continue
        fn = next(f for f in find_evolvables(parent) if f.key == child.details["function"])
        lines, new = text.splitlines(keepends=True), child.sources[path].splitlines(keepends=True)
        assert new[:fn.start - 1] == lines[:fn.start - 1]
        assert new[len(new) - (len(lines) - fn.end):] == lines[fn.end:]


@pytest.mark.filterwarnings("ignore::SyntaxWarning")  # mutants like `1.0()` still compile
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), which=st.integers(0, len(ALL) - 1),
       target=st.integers(0, len(GENOMES) - 1))
def test_every_child_compiles_and_records_its_lineage(seed: int, which: int, target: int) -> None:
    operator, parent = ALL[which], GENOMES[target]
    child = _apply(operator, parent, seed)
    if child is None:
        assert operator.last_reason.startswith(operator.name)
        return
    for path, text in child.sources.items():
        compile(text, path, "exec")
    assert child.operator == operator.name and child.parents[0] == parent.id
    assert child.id != parent.id and child.details["function"]
    _untouched_outside_evolvables(parent, child)
    _declarations_as_a_fresh_read_finds_them(child)


def _declarations_as_a_fresh_read_finds_them(child: Genome) -> None:
    """What the operator handed the caches (inherit) is what reading the child gives."""
    assert find_evolvables(child) == list(evolvables._find(child.sources))
    assert params.agent_names(child.sources) == set(params._find_agent_names(child.sources))
    assert params.param_specs(child) == list(params._find_specs(child.sources))


@pytest.mark.parametrize("operator", ALL, ids=lambda op: op.name)
def test_same_seed_same_child_and_different_seeds_differ(operator: object) -> None:
    for parent in GENOMES[:3]:
        first = [_apply(operator, parent, seed) for seed in range(12)]
        second = [_apply(operator, parent, seed) for seed in range(12)]
        assert [c and c.id for c in first] == [c and c.id for c in second]
        assert len({c.id for c in first if c}) >= 2


def test_children_are_the_same_in_another_process() -> None:
    script = """
import json, random
from project_o.evolution.operators import AST_OPERATORS
from tests.evolution.samples import sample, sample_b
out = {}
for cls in AST_OPERATORS:
    child = cls().apply(sample(), random.Random(7), donors=[sample_b()])
    out[cls.name] = child and child.id
print(json.dumps(out))
"""
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, check=True, timeout=60, cwd=REPO_ROOT)
    there = json.loads(done.stdout)
    here = {cls.name: (c := cls().apply(sample(), random.Random(7), donors=[sample_b()]))
            and c.id for cls in AST_OPERATORS}
    assert there == here and all(here.values())


def test_functions_found_with_their_exact_lines() -> None:
    found = {fn.qualname: fn for fn in find_evolvables(Genome({"hard.py": HARD}))}
    assert list(found) == ["Store.lookup", "fetch", "counter"]
    assert found["Store.lookup"].indent == "    "
    assert segment(HARD, found["counter"]).startswith("@bot.evolvable\ndef counter(start=0):")
    assert segment(HARD, found["counter"]).rstrip().endswith("del total")


def test_constant_perturbation_nudges_one_number() -> None:
    parent = sample()
    for seed in range(20):
        child = ConstantPerturbation().apply(parent, random.Random(seed))
        assert child is not None
        old, new = child.details["change"].split(" -> ")
        assert float(old) != float(new)
        if "." not in old:  # ints move by exactly one
            assert abs(int(new) - int(old)) == 1
        else:
            assert abs(float(new) - float(old)) < 1.0


def test_operator_swap_uses_the_partner() -> None:
    parent = Genome({"a.py": "@agent.evolvable\ndef f(a, b):\n    return a + b\n"})
    child = OperatorSwap().apply(parent, random.Random(0))
    assert child is not None and "return a - b" in child.sources["a.py"]
    assert child.details["change"] == "Add -> Sub"


def test_deletion_keeps_bodies_and_docstrings() -> None:
    parent = Genome({"a.py": '@agent.evolvable\ndef f(x):\n    """Doc."""\n    if x:\n'
                             '        return 1\n    return 2\n'})
    for seed in range(30):
        child = StatementDeletion().apply(parent, random.Random(seed))
        if child is None:
            continue
        fn = ast.parse(child.sources["a.py"]).body[0]
        assert isinstance(fn, ast.FunctionDef) and ast.get_docstring(fn) == "Doc."
        assert all(node.body for node in ast.walk(fn) if isinstance(node, ast.If))


def test_a_body_of_one_statement_is_never_emptied() -> None:
    operator = StatementDeletion()
    for text in ("@agent.evolvable\ndef f(x):\n    return x\n",
                 ('@agent.evolvable\ndef f(x):\n    """Only a docstring would be left."""\n'
                  '    return x\n')):
        assert operator.apply(Genome({"a.py": text}), random.Random(0)) is None
        assert "no site" in operator.last_reason


def test_duplication_and_reorder_change_the_statement_list() -> None:
    parent = Genome({"a.py": "@agent.evolvable\ndef f(xs):\n    xs.append(1)\n"
                             "    xs.sort()\n    return xs\n"})
    dup = StatementDuplication().apply(parent, random.Random(1))
    assert dup is not None and dup.sources["a.py"].count("xs.") == 2 + 1
    swapped = StatementReorder().apply(parent, random.Random(1))
    assert swapped is not None
    body = ast.parse(swapped.sources["a.py"]).body[0].body  # type: ignore[attr-defined]
    assert [ast.unparse(s) for s in body] != ["xs.append(1)", "xs.sort()", "return xs"]


def test_donor_code_comes_from_the_donor_and_is_recorded() -> None:
    parent, donor = sample(), sample_b()
    taken = 0
    for seed in range(20):
        child = DonorSubtree().apply(parent, random.Random(seed), donors=[donor])
        if child is None:
            continue
        assert child.parents == (parent.id, donor.id) and child.details["donor"] == donor.id
        taken += "bonus" in child.sources["agent.py"] or "startswith" in child.sources["agent.py"]
    assert taken  # pieces only the donor has do arrive


def test_several_donors_each_give_pieces() -> None:
    # One draw over the pieces of every donor function: with two donors, both are used.
    parent = Genome({"a.py": "@agent.evolvable\ndef f(x):\n    return x + 1\n"})
    first = Genome({"a.py": "@agent.evolvable\ndef f(x):\n    return alpha(x) * 2\n"})
    second = Genome({"a.py": "@agent.evolvable\ndef f(x):\n    return beta(x) - 3\n"})
    used = set()
    for seed in range(40):
        child = DonorSubtree().apply(parent, random.Random(seed), donors=[first, second])
        if child is not None:
            donor = child.details["donor"]
            text = child.sources["a.py"]
            assert donor in (first.id, second.id) and child.parents == (parent.id, donor)
            # the grafted piece comes from the donor the details name
            assert "beta" not in text if donor == first.id else "alpha" not in text
            used.add(donor)
    assert used == {first.id, second.id}


def test_donor_without_donors_uses_another_function_of_the_parent() -> None:
    operator = DonorSubtree()
    child = operator.apply(sample(), random.Random(3))
    assert child is not None and child.parents == (sample().id,)
    single = Genome({"a.py": "@agent.evolvable\ndef f(x):\n    return x + 1\n"})
    assert operator.apply(single, random.Random(3)) is None
    assert "pass donors" in operator.last_reason


@pytest.mark.parametrize("operator", ALL, ids=lambda op: op.name)
def test_no_evolvable_function_means_no_child(operator: object) -> None:
    for genome in (Genome({"a.py": PLAIN}), Genome({"a.py": "def (:\n"})):
        assert operator.apply(genome, random.Random(0)) is None  # type: ignore[attr-defined]
        assert "no @agent.evolvable" in operator.last_reason  # type: ignore[attr-defined]


def test_comments_survive_and_a_missing_final_newline_stays_missing() -> None:
    text = "# header\n@agent.evolvable\ndef f(a):\n    return a * 2  # double\n# footer"
    child = OperatorSwap().apply(Genome({"a.py": text}), random.Random(0))
    assert child is not None  # a text edit: the comment in the function stays too
    assert child.sources["a.py"] == text.replace("a * 2", "a / 2")
    rewritten = StatementDuplication().apply(
        Genome({"a.py": text.replace("    return", "    a.sort()  # in place\n    return")}),
        random.Random(0))
    assert rewritten is not None  # a tree rewrite prints the def again, without its comments
    assert rewritten.sources["a.py"].startswith("# header\n@agent.evolvable\ndef f(a):\n")
    assert rewritten.sources["a.py"].count("a.sort()\n") == 2
    assert rewritten.sources["a.py"].endswith("return a * 2\n# footer")


@pytest.mark.filterwarnings("ignore::SyntaxWarning")
@pytest.mark.parametrize("operator", [ConstantPerturbation(), OperatorSwap(), DonorSubtree()],
                         ids=lambda op: op.name)
def test_a_text_edit_means_exactly_what_the_tree_rewrite_means(
        operator: object, monkeypatch: pytest.MonkeyPatch) -> None:
    edited = {}
    for target, parent in enumerate(GENOMES):
        for seed in range(150):
            edited[target, seed] = _apply(operator, parent, seed)
    monkeypatch.setattr(type(operator), "_edit", lambda *args, **kwargs: ast_ops._FALLBACK)
    compared = 0
    for (target, seed), child in edited.items():
        rewritten = _apply(operator, GENOMES[target], seed)
        assert (child is None) == (rewritten is None), (target, seed)
        if child is None or rewritten is None:
            continue
        for path, text in child.sources.items():
            assert ast.dump(ast.parse(text)) == ast.dump(ast.parse(rewritten.sources[path])), \
                (target, seed, child.details)
        compared += 1
    assert compared > 300


def test_text_edits_land_on_the_right_characters_after_non_ascii_text() -> None:
    text = '@agent.evolvable\ndef f(x):\n    return "héllo ✓ wörld" * (x + 1)\n'
    for seed in range(10):
        child = ConstantPerturbation().apply(Genome({"a.py": text}), random.Random(seed))
        assert child is not None
        new = child.sources["a.py"]
        assert new.startswith('@agent.evolvable\ndef f(x):\n    return "héllo ✓ wörld" * (x + ')
        assert ast.literal_eval(new.split("(x + ")[1].split(")")[0].strip("()")) in (0, 2)
