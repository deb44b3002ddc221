"""The genetic algorithm: DEAP's ``eaSimple`` on genomes, durable and resumable.

::

    generation 0   seed + (n-1) mutants of it ─► evaluate ─► commit
    generation g   elites (best ``elitism``, distinct)
                 + tournaments of ``tournament`` aspirants ─► n - elites parents
                   ─► vary: pairs crossed with p = crossover (cx_functions, cx_params,
                            mut_ast_donor with the mate as donor), each then mutated
                            with p = mutation (params and AST operators)
                   ─► evaluate only genomes never evaluated (cache by genome id)
                   ─► commit {generation, population ids, rng state, best}

Every random choice comes from one ``random.Random(seed)``, and evaluation
never touches it; results are keyed by genome id, so the order in which
evaluators finish changes nothing. With a :class:`RunStore`, each batch of
evaluations is on disk as it completes and each generation is committed
before the next starts: :meth:`GeneticAlgorithm.run` on the same store
continues a killed run from its last generation and reuses every
evaluation, giving the result an uninterrupted run would have given.

Multi-objective mode ranks by Pareto front on (score ↑, time ↓, memory ↓)
and then by score. Time and memory are measurements, so such a run is
reproducible only as far as they are.
"""

from __future__ import annotations

import math
import random
import statistics
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Final, Protocol

from project_o.errors import InvalidArgument
from project_o.evolution.genome import Genome
from project_o.evolution.operators import Operator, default_operators
from project_o.evolution.run_store import (
    GenerationState,
    RunStore,
    rng_from_state,
    rng_state,
)
from project_o.evolution.task import Evaluation

__all__ = [
    "CROSSOVER_OPERATORS",
    "GAConfig",
    "GAResult",
    "GenerationStats",
    "GeneticAlgorithm",
    "Reporter",
    "pareto_ranks",
]

#: operators that take a mate: its functions, its params, or one of its subtrees
CROSSOVER_OPERATORS: Final = ("cx_functions", "cx_params", "mut_ast_donor")

Evaluator = Callable[..., dict[str, Evaluation]]


@dataclass(frozen=True)
class GAConfig:
    """The loop's knobs (``project-o evolve --help`` says what each one does)."""

    population: int = 50
    generations: int = 10
    tournament: int = 25
    crossover: float = 0.7
    mutation: float = 0.1
    elitism: int = 5
    seed: int = 0
    multi_objective: bool = False

    def __post_init__(self) -> None:
        if self.population < 2 or self.generations < 0 or self.tournament < 1:
            raise InvalidArgument("need population >= 2, generations >= 0, tournament >= 1; "
                                  f"got {self.population}, {self.generations}, {self.tournament}")
        if not (0 <= self.crossover <= 1 and 0 <= self.mutation <= 1):
            raise InvalidArgument("crossover and mutation are probabilities in [0, 1]; "
                                  f"got {self.crossover}, {self.mutation}")
        if not 0 <= self.elitism < self.population:
            raise InvalidArgument(f"elitism must be in [0, population), got {self.elitism}")


@dataclass(frozen=True)
class GenerationStats:
    """One row of the per-generation table."""

    generation: int
    best: float
    median: float
    evaluated: int
    reused: int
    crashes: int
    timeouts: int
    gamed: int
    errors: int
    seconds: float
    best_id: str


@dataclass(frozen=True)
class GAResult:
    """How a run ended: the winner, its evaluation and the way there."""

    run_id: str
    seed: Genome
    winner: Genome
    evaluation: Evaluation
    population: list[Genome]
    history: list[GenerationStats] = field(default_factory=list)
    evaluations: int = 0


class Reporter(Protocol):
    """What a user interface hears from the loop."""

    def on_progress(self, generation: int, done: int, total: int) -> None: ...

    def on_generation(self, stats: GenerationStats) -> None: ...


class GeneticAlgorithm:
    """DEAP-style generational loop over genomes (see the module docstring)."""

    def __init__(self, seed: Genome, evaluate: Evaluator, config: GAConfig = GAConfig(), *,
                 operators: Mapping[str, Operator] | None = None, store: RunStore | None = None,
                 reporter: Reporter | None = None) -> None:
        self.seed, self.config, self.store, self.reporter = seed, config, store, reporter
        self._evaluate = evaluate
        ops = dict(operators or default_operators())
        self._mutations = [op for name, op in sorted(ops.items()) if not name.startswith("cx_")]
        self._crossovers = [ops[name] for name in CROSSOVER_OPERATORS if name in ops]
        self._cache: dict[str, Evaluation] = {}
        self._genomes: dict[str, Genome] = {seed.id: seed}
        self._evaluated_now = 0

    # -- the loop -------------------------------------------------------

    def run(self, *, resume: bool = False) -> GAResult:
        """Run to ``config.generations``; with ``resume``, continue the store's last run."""
        run_id, state = self._resume() if resume else (self._start(), None)
        if state is None:
            rng = random.Random(self.config.seed)
            population = self._initial(rng)
            state = self._settle(run_id, 0, population, rng, [], time.monotonic())
        while state.generation < self.config.generations:
            started, rng = time.monotonic(), rng_from_state(state.rng)
            population = self._next(self._population(state), rng)
            state = self._settle(run_id, state.generation + 1, population, rng, state.history,
                                 started, best=state.best)
        final = self._population(state)
        best = self._genomes[state.best]
        return GAResult(run_id, self.seed, best, self._cache[best.id], final,
                        [GenerationStats(**row) for row in state.history], len(self._cache))

    def _initial(self, rng: random.Random) -> list[Genome]:
        population = [self.seed]
        while len(population) < self.config.population:
            population.append(self._mutate(rng.choice(population), rng))
        return population

    def _next(self, population: list[Genome], rng: random.Random) -> list[Genome]:
        ranked = self._ranked(population)
        elites = ranked[:self.config.elitism]
        parents = [self._tournament(population, rng)
                   for _ in range(self.config.population - len(elites))]
        return elites + self._vary(parents, rng)

    def _vary(self, parents: list[Genome], rng: random.Random) -> list[Genome]:
        """DEAP's varAnd: cross neighbouring pairs, then mutate each child."""
        offspring = list(parents)
        for i in range(1, len(offspring), 2):
            if rng.random() < self.config.crossover:
                a, b = offspring[i - 1], offspring[i]
                offspring[i - 1], offspring[i] = self._cross(a, b, rng), self._cross(b, a, rng)
        for i, genome in enumerate(offspring):
            if rng.random() < self.config.mutation:
                offspring[i] = self._mutate(genome, rng)
        return offspring

    def _settle(self, run_id: str, generation: int, population: list[Genome],
                rng: random.Random, history: list[dict[str, Any]], started: float,
                best: str = "") -> GenerationState:
        """Evaluate what is new, then commit the generation."""
        fresh = self._evaluate_new(population, generation, run_id)
        for genome in population:
            if not best or self._key(genome, population) > self._key(self._genomes[best],
                                                                    population):
                best = genome.id
        stats = self._stats(generation, population, fresh, started, best)
        state = GenerationState(generation, [g.id for g in population], rng_state(rng), best,
                                [*history, asdict(stats)])
        if self.store is not None:
            self.store.commit_generation(run_id, state)
        if self.reporter is not None:
            self.reporter.on_generation(stats)
        return state

    # -- operators ------------------------------------------------------

    def _mutate(self, genome: Genome, rng: random.Random) -> Genome:
        return self._first_child(self._mutations, genome, (), rng) or genome

    def _cross(self, genome: Genome, mate: Genome, rng: random.Random) -> Genome:
        if genome.id == mate.id:
            return genome
        return self._first_child(self._crossovers, genome, (mate,), rng) or genome

    def _first_child(self, operators: Sequence[Operator], genome: Genome,
                     donors: Sequence[Genome], rng: random.Random) -> Genome | None:
        """Try the operators in a random order; the first child wins."""
        for operator in rng.sample(list(operators), len(operators)):
            child = operator.apply(genome, rng, donors=donors)
            if child is not None:
                self._genomes.setdefault(child.id, child)
                return child
        return None

    # -- selection ------------------------------------------------------

    def _tournament(self, population: list[Genome], rng: random.Random) -> Genome:
        aspirants = [population[rng.randrange(len(population))]
                     for _ in range(self.config.tournament)]
        return max(aspirants, key=lambda g: self._key(g, population))  # first of equals

    def _ranked(self, population: list[Genome]) -> list[Genome]:
        """Distinct genomes, best first; equal keys in id order, so nothing depends on luck."""
        distinct = list({g.id: g for g in population}.values())
        return sorted(distinct, key=lambda g: (_negate(self._key(g, population)), g.id))

    def _key(self, genome: Genome, population: list[Genome]) -> tuple[float, ...]:
        fitness = self._cache[genome.id].fitness
        if not self.config.multi_objective:
            return (fitness,)
        ranks = self._ranks_for(population)
        return (-ranks.get(genome.id, math.inf), fitness)

    def _ranks_for(self, population: list[Genome]) -> dict[str, float]:
        ids = tuple(sorted({g.id for g in population}))
        if getattr(self, "_rank_ids", None) != ids:
            self._rank_ids = ids
            self._rank_cache = pareto_ranks({i: self._cache[i] for i in ids})
        return self._rank_cache

    # -- evaluation and bookkeeping ----------------------------------------

    def _evaluate_new(self, population: list[Genome], generation: int,
                      run_id: str) -> list[Evaluation]:
        new = [g for g in {g.id: g for g in population}.values() if g.id not in self._cache]
        for genome in population:
            self._genomes.setdefault(genome.id, genome)
        if not new:
            return []

        def on_batch(genomes: list[Genome], evaluations: list[Evaluation]) -> None:
            if self.store is not None:
                self.store.record(run_id, genomes, evaluations)

        def on_progress(done: int, total: int) -> None:
            if self.reporter is not None:
                self.reporter.on_progress(generation, done, total)

        results = self._evaluate(new, on_batch=on_batch, on_progress=on_progress)
        self._cache.update(results)
        return [results[g.id] for g in new]

    def _stats(self, generation: int, population: list[Genome], fresh: list[Evaluation],
               started: float, best: str) -> GenerationStats:
        scores = [self._cache[g.id].fitness for g in population]
        finite = [s for s in scores if math.isfinite(s)]
        kinds = [e.kind for e in fresh]
        return GenerationStats(
            generation=generation, best=max(scores), median=statistics.median(finite)
            if finite else -math.inf, evaluated=len(fresh),
            reused=len({g.id for g in population}) - len(fresh), crashes=kinds.count("crash")
            + kinds.count("memory"), timeouts=kinds.count("timeout"), gamed=kinds.count("gamed"),
            errors=kinds.count("error"), seconds=round(time.monotonic() - started, 6),
            best_id=best)

    def _start(self) -> str:
        run_id = uuid.uuid4().hex[:12]
        if self.store is not None:
            self.store.start_run(run_id, asdict(self.config), self.seed)
        return run_id

    def _resume(self) -> tuple[str, GenerationState | None]:
        if self.store is None:
            raise InvalidArgument("resume needs a run store (a --run-dir with an earlier run)")
        latest = self.store.latest_run()
        if latest is None:
            raise InvalidArgument(f"no run to resume in {self.store.path}; start one first")
        run_id, info = latest
        if info["seed"] != self.seed.id or info["config"] != asdict(self.config):
            raise InvalidArgument(
                f"run {run_id} in {self.store.path} was started with seed {info['seed']} and "
                f"config {info['config']}; resume it with the same agent and options")
        self._cache = self.store.evaluations(run_id)
        state = self.store.last_generation(run_id)
        if state is not None:
            for genome_id in {*state.population, state.best}:
                self._genomes.setdefault(genome_id, self.store.genome(genome_id))
        return run_id, state

    def _population(self, state: GenerationState) -> list[Genome]:
        return [self._genomes[i] for i in state.population]


def _negate(key: tuple[float, ...]) -> tuple[float, ...]:
    return tuple(-k for k in key)


def pareto_ranks(evaluations: Mapping[str, Evaluation]) -> dict[str, float]:
    """Front number (0 = non-dominated) on (score ↑, time ↓, memory ↓); failures get inf."""
    points = {gid: (e.fitness, -float(e.metrics.get("time_s", math.inf)),
                    -float(e.metrics.get("memory_kb", math.inf)))
              for gid, e in evaluations.items() if e.ok}
    ranks: dict[str, float] = {gid: math.inf for gid in evaluations}
    remaining, front = dict(points), 0
    while remaining:
        layer = [a for a, pa in remaining.items()
                 if not any(_dominates(pb, pa) for b, pb in remaining.items() if b != a)]
        for gid in layer:
            ranks[gid] = front
            del remaining[gid]
        front += 1
    return ranks


def _dominates(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return all(x >= y for x, y in zip(a, b, strict=True)) and a != b
