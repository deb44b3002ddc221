"""Islands: populations evolve apart and trade their best on a ring, deterministically."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from project_o.errors import InvalidArgument
from project_o.evolution.archive import MapElites
from project_o.evolution.genetic import GAConfig, GeneticAlgorithm
from project_o.evolution.genome import Genome
from project_o.evolution.islands import Island, migrants, ring_migration
from project_o.evolution.population import EvaluatorPool
from project_o.evolution.run_store import RunStore
from project_o.evolution.task import Evaluation

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "symbolic_regression"
RING = GAConfig(population=10, generations=4, tournament=3, elitism=1, seed=4, islands=3,
                migration_interval=1, migration_rate=0.2)


@pytest.fixture(scope="module")
def pool() -> Iterator[EvaluatorPool]:
    with EvaluatorPool(EXAMPLE / "task.py", workers=2) as started:
        yield started


def _genomes(scores: dict[str, float]) -> tuple[dict[str, Genome], dict[str, Evaluation]]:
    genomes = {name: Genome({"agent.py": f"# {name}\n"}) for name in scores}
    cache = {g.id: Evaluation(g.id, {"score": scores[name]}) for name, g in genomes.items()}
    return genomes, cache


def test_each_island_sends_its_best_to_the_next_replacing_the_worst() -> None:
    g, cache = _genomes({"a9": 9, "a1": 1, "a2": 2, "b8": 8, "b0": 0, "b3": 3,
                         "c7": 7, "c5": 5, "c4": 4})
    islands = [Island([g["a9"], g["a1"], g["a2"]]), Island([g["b8"], g["b0"], g["b3"]]),
               Island([g["c7"], g["c5"], g["c4"]])]
    moves = ring_migration(islands, 5, 1, genomes={x.id: x for x in g.values()}, cache=cache,
                           key=lambda genome: (cache[genome.id].fitness,))
    assert [(m.source, m.target) for m in moves] == [(2, 0), (0, 1), (1, 2)]
    # What an island sends is its best from before any arrived: b sends b8, not a9.
    assert islands[0].population == [g["a9"], g["c7"], g["a2"]]
    assert islands[1].population == [g["b8"], g["a9"], g["b3"]]
    assert islands[2].population == [g["c7"], g["c5"], g["b8"]]
    assert moves[1].to_json() == {"generation": 5, "from": 0, "to": 1, "genomes": [g["a9"].id]}


def test_a_genome_an_island_already_has_is_not_sent_twice() -> None:
    g, cache = _genomes({"x": 5, "y": 1, "z": 0})
    islands = [Island([g["x"], g["y"]]), Island([g["x"], g["z"]])]
    moves = ring_migration(islands, 1, 1, genomes={x.id: x for x in g.values()}, cache=cache,
                           key=lambda genome: (cache[genome.id].fitness,))
    assert moves == [] and islands[1].population == [g["x"], g["z"]]


def test_archive_islands_offer_their_elites_to_the_next_archive() -> None:
    scores = {"p": 9.0, "q": 1.0, "r": 5.0, "s": 8.0}
    g, _ = _genomes(scores)
    x = {"p": 0.0, "q": 10.0, "r": 0.0, "s": 10.0}
    cache = {g[n].id: Evaluation(g[n].id, {"score": scores[n], "x": x[n]}) for n in scores}
    first, second = MapElites(["x"], 2), MapElites(["x"], 2)
    for name, archive in (("p", first), ("q", first), ("r", second), ("s", second)):
        archive.insert(g[name].id, cache[g[name].id])
    islands = [Island([], first), Island([], second)]
    moves = ring_migration(islands, 3, 1, genomes={v.id: v for v in g.values()}, cache=cache,
                           key=lambda genome: (cache[genome.id].fitness,))
    # first sends p (9, cell 0): it beats r there. second sends s (8, cell 1): it beats q.
    assert second.cells() == {"0": g["p"].id, "1": g["s"].id}
    assert first.cells() == {"0": g["p"].id, "1": g["s"].id}
    assert [(m.source, m.target, m.genomes) for m in moves] == [
        (1, 0, [g["s"].id]), (0, 1, [g["p"].id])]
    again = ring_migration(islands, 6, 1, genomes={v.id: v for v in g.values()}, cache=cache,
                           key=lambda genome: (cache[genome.id].fitness,))
    assert again == []  # both already hold what the other sends


def test_bad_ring_options_are_refused() -> None:
    for bad in ({"islands": 0}, {"migration_interval": 0}, {"migration_rate": 0.0},
                {"migration_rate": 1.5}):
        with pytest.raises(InvalidArgument):
            GAConfig(**bad)  # type: ignore[arg-type]
    assert migrants(50, 0.1) == 5 and migrants(4, 0.1) == 1


def test_islands_evolve_apart_and_migrate(pool: EvaluatorPool, tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    seed = Genome.from_path(EXAMPLE / "agent.py")
    result = GeneticAlgorithm(seed, pool.evaluate, RING, store=store).run()
    states = store.generations(result.run_id)
    scores = {i: e.fitness for i, e in store.evaluations(result.run_id).items()}
    store.close()
    first = [set(island["population"]) for island in states[0].islands]
    assert len(first) == 3 and first[0] != first[1] != first[2]  # each drew its own mutants
    assert len(result.population) == 3 * RING.population
    assert result.migrations and result.counters["migrants"] == sum(
        len(m.genomes) for m in result.migrations)
    arrived = {(m.generation, m.target): set(m.genomes) for m in result.migrations}
    for move in result.migrations:
        state = states[move.generation]
        assert set(move.genomes) <= set(state.islands[move.target]["population"])
        # The first migrant was its island's best: better than all it kept of its own.
        kept = set(state.islands[move.source]["population"]) - arrived.get(
            (move.generation, move.source), set())
        assert all(scores[i] <= scores[move.genomes[0]] for i in kept)
    # Each island's reported best is the best of its population.
    for row, island in zip(result.history[-1].islands, states[-1].islands, strict=True):
        assert row["best_id"] in island["population"]
        assert row["best"] == scores[row["best_id"]] == max(scores[i] for i in island["population"])
    rows = result.history[-1].islands
    assert max(row["best"] for row in rows) == result.evaluation.fitness


def test_the_same_seed_gives_the_same_islands(pool: EvaluatorPool) -> None:
    seed = Genome.from_path(EXAMPLE / "agent.py")
    first = GeneticAlgorithm(seed, pool.evaluate, RING).run()
    second = GeneticAlgorithm(seed, pool.evaluate, RING).run()
    assert [g.id for g in first.population] == [g.id for g in second.population]
    assert first.migrations == second.migrations
    assert [s.islands for s in first.history] == [s.islands for s in second.history]
