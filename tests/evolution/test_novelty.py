"""Novelty: a candidate equal or nearly equal to an evaluated one is skipped, counted, recorded."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from project_o.errors import InvalidArgument
from project_o.evolution.genetic import GAConfig, GeneticAlgorithm
from project_o.evolution.genome import Genome
from project_o.evolution.novelty import NoveltyIndex, normalise
from project_o.evolution.population import EvaluatorPool
from project_o.evolution.run_store import RunStore

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "symbolic_regression"

BASE = '''"""Rank facts."""


def score(query, fact):
    """How well fact answers query."""
    words = set(query.lower().split())
    hits = sum(1 for w in fact.lower().split() if w in words)
    return hits / (len(fact.split()) + 1.0) * 2


def rank(query, facts, k=3):
    scored = [(score(query, f), f) for f in facts]
    scored.sort(reverse=True)
    return scored[:k]
'''


def _genome(text: str, **params: object) -> Genome:
    return Genome({"agent.py": text}, params)


def test_comments_docstrings_and_layout_do_not_make_code_new() -> None:
    dressed = BASE.replace('"""How well fact answers query."""', "# how well it answers") \
        .replace("return scored[:k]", "return scored[ : k]   # the best k").replace(
            '"""Rank facts."""', '"""Rank facts, best first."""')
    assert normalise(_genome(dressed)) == normalise(_genome(BASE))
    assert normalise(_genome(BASE, k=3)) != normalise(_genome(BASE, k=4))  # params count
    index = NoveltyIndex(1.0)
    index.add(_genome(BASE))
    twin = index.twin(_genome(dressed))
    assert twin is not None and twin.genome_id == _genome(BASE).id and twin.similarity == 1.0
    assert index.twin(_genome(BASE.replace("* 2", "* 3"))) is None  # 1.0: equal code only


def test_a_near_copy_is_a_twin_and_a_real_change_is_not() -> None:
    index = NoveltyIndex(0.9)
    index.add(_genome(BASE))
    near = _genome(BASE.replace("* 2", "* 3"))  # one token in a hundred
    far = _genome(BASE.replace("scored.sort(reverse=True)", "scored.sort()\n    scored = "
                               "[s for s in scored if s[0] > 0.5 and len(s[1]) < 200]"))
    twin = index.twin(near)
    assert twin is not None and 0.9 <= twin.similarity < 1.0
    assert index.twin(far) is None
    assert NoveltyIndex(0.99).twin(near) is None  # an empty index has no twins
    strict = NoveltyIndex(0.99)
    strict.add(_genome(BASE))
    assert strict.twin(near) is None


def test_the_twin_found_does_not_depend_on_the_order_things_were_added() -> None:
    rng = random.Random(5)
    variants = [_genome(BASE.replace("* 2", f"* {rng.randrange(10)}").replace(
        "k=3", f"k={rng.randrange(5)}")) for _ in range(30)]
    probes = [_genome(BASE.replace("1.0", f"{rng.random():.1f}")) for _ in range(10)]
    answers = []
    for order in (variants, variants[::-1], rng.sample(variants, len(variants))):
        index = NoveltyIndex(0.8)
        for genome in order:
            index.add(genome)
        answers.append([index.twin(p) for p in probes])
    assert answers[0] == answers[1] == answers[2]
    assert any(a is not None for a in answers[0])
    with pytest.raises(InvalidArgument):
        NoveltyIndex(0.0)


@pytest.fixture(scope="module")
def pool() -> Iterator[EvaluatorPool]:
    with EvaluatorPool(EXAMPLE / "task.py", workers=2) as started:
        yield started


def test_the_loop_skips_twins_and_records_them(pool: EvaluatorPool, tmp_path: Path) -> None:
    config = GAConfig(population=16, generations=4, tournament=3, elitism=1, seed=1,
                      novelty=0.9)
    store = RunStore(tmp_path)
    seed = Genome.from_path(EXAMPLE / "agent.py")
    result = GeneticAlgorithm(seed, pool.evaluate, config, store=store).run()
    twins = store.duplicates(result.run_id)
    evaluated = store.evaluations(result.run_id)
    counters = result.counters
    assert twins and len(twins) == counters.get("duplicates", 0) + counters["near_duplicates"]
    assert sum(s.duplicates for s in result.history) == len(twins)
    assert counters["evaluated"] == len(evaluated) == result.evaluations
    with sqlite3.connect(tmp_path / "VAULT" / "catalog.sqlite") as conn:
        stored = {row[0] for row in conn.execute("SELECT id FROM versions")}
    for row in twins:
        assert row["version"] not in evaluated and row["twin"] in evaluated  # never run
        assert row["version"] in stored  # but its source is in the catalog
        assert row["similarity"] >= 0.9
    # Replayed in order: nothing evaluated had an evaluated twin when it was.
    index, seen = NoveltyIndex(0.9), set()
    for state in store.generations(result.run_id):
        for genome_id in dict.fromkeys(state.population):
            if genome_id not in seen:
                genome = store.genome(genome_id)
                assert index.twin(genome) is None, genome_id
                index.add(genome)
                seen.add(genome_id)
    assert seen == set(evaluated)
    store.close()


def test_without_novelty_nothing_is_skipped(pool: EvaluatorPool) -> None:
    config = GAConfig(population=16, generations=2, tournament=3, elitism=1, seed=1)
    result = GeneticAlgorithm(Genome.from_path(EXAMPLE / "agent.py"), pool.evaluate,
                              config).run()
    assert "duplicates" not in result.counters and "near_duplicates" not in result.counters
    assert all(s.duplicates == 0 for s in result.history)
