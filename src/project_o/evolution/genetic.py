"""The genetic algorithm: DEAP's ``eaSimple`` on genomes, durable and resumable.

::

    generation 0   seed + (n-1) mutants of it, on each of K islands ─► evaluate ─► commit
    generation g   per island:
                     elites (best ``elitism``, distinct)
                   + tournaments of ``tournament`` aspirants ─► n - elites parents
                     (MAP-Elites: n parents sampled from the island's archive instead)
                   ─► vary, pair by pair: crossed with p = crossover (cx_functions,
                            cx_params, mut_ast_donor with the mate as donor), each child
                            then mutated with p = mutation (MAP-Elites: always), operators
                            in a random order or the bandit's; the pair is then final
                 ─► novelty: a twin of an evaluated genome is mutated again (3 tries), else
                    the evaluated one takes its place
                 ─► evaluate only genomes never evaluated (cache by genome id); with a
                    stream, each offspring went to the evaluators once final, while the
                    rest was bred, and the generation waits for the last results
                 ─► learn: archives place them, the bandit counts improvements
                 ─► every ``migration_interval`` generations: ring migration
                 ─► commit {generation, islands, archives, bandit, counters, rng, best,
                            each run extension's snapshot (:mod:`.extensions`)}
                 an extension's stop_reason (an LLM budget spent) ends the run here

Every random choice comes from one ``random.Random(seed)``, and evaluation
never touches it; results are keyed by genome id, so the order in which
evaluators finish changes nothing. With a :class:`RunStore`, each batch of
evaluations is on disk as it completes (a streamed batch: its results so
far, at the end of each generation) and each generation is committed
before the next one's evaluations are recorded (the commit's fsync runs
while the next generation is bred, :mod:`.commit_behind`; a generation is
reported once committed): :meth:`GeneticAlgorithm.run` on the same store
continues a killed run from its last generation and reuses every
evaluation, giving the result an uninterrupted run would have given
(islands, archives, the bandit's counts and the counters included).

The pieces live in their own modules: :mod:`.islands` (ring migration),
:mod:`.archive` (MAP-Elites), :mod:`.novelty` (twins),
:mod:`.operator_choice` (random order or the bandit, and its credit),
:mod:`.cascade` (stages, inside the evaluator).

Candidates rank by score; with a cascade, first by the stage they reached
(:attr:`Evaluation.merit`), so one that stopped early never outranks one
that passed. Multi-objective mode ranks by Pareto front on (score ↑, time ↓,
memory ↓) and then by score. Time and memory are measurements, so such a
run is reproducible only as far as they are.
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import random
import statistics
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Final, Protocol

from project_o.errors import InvalidArgument
from project_o.evolution.archive import ARCHIVE_KINDS, MapElites
from project_o.evolution.commit_behind import CommitBehind
from project_o.evolution.extensions import RunContext, RunExtension
from project_o.evolution.genome import Genome
from project_o.evolution.islands import (
    DEFAULT_MIGRATION_INTERVAL,
    DEFAULT_MIGRATION_RATE,
    Island,
    Migration,
    check_islands,
    migrants,
    ring_migration,
)
from project_o.evolution.novelty import NoveltyIndex, Twin, replace_twins
from project_o.evolution.operator_choice import OperatorChoice
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
    "EvaluationStream",
    "GAConfig",
    "GAResult",
    "GenerationStats",
    "GeneticAlgorithm",
    "Reporter",
    "pareto_ranks",
]

#: operators that take a mate: its functions, its params, or one of its subtrees
CROSSOVER_OPERATORS: Final = ("cx_functions", "cx_params", "mut_ast_donor")
#: cells per feature of a MAP-Elites grid: OpenEvolve's default feature_bins
DEFAULT_BINS: Final = 10

Evaluator = Callable[..., dict[str, Evaluation]]


class EvaluationStream(Protocol):
    """Evaluation that starts while a generation is still being bred (optional).

    :meth:`EvaluatorPool.stream <project_o.evolution.population.EvaluatorPool.stream>`
    makes one: the loop submits each offspring as soon as it is final, takes
    the results (recorded) when the generation is complete, and closes it when
    the run ends.
    """

    def submit(self, genome: Genome) -> None: ...

    def results(self, *, on_batch: Callable[[list[Genome], list[Evaluation]], None] | None = None,
                on_progress: Callable[[int, int], None] | None = None,
                ) -> dict[str, Evaluation]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class GAConfig:
    """The loop's knobs (``project-o evolve --help`` says what each one does).

    The defaults run one island, with no archive, no novelty and no bandit.
    """

    population: int = 50
    generations: int = 10
    tournament: int = 25
    crossover: float = 0.7
    mutation: float = 0.1
    elitism: int = 5
    seed: int = 0
    multi_objective: bool = False
    #: populations of ``population`` each, on a ring (:mod:`.islands`)
    islands: int = 1
    migration_interval: int = DEFAULT_MIGRATION_INTERVAL
    migration_rate: float = DEFAULT_MIGRATION_RATE
    #: "" or "map-elites": parents from a grid over ``features`` (task metrics), ``bins`` each
    archive: str = ""
    features: tuple[str, ...] = ()
    bins: int = DEFAULT_BINS
    #: skip candidates at least this similar to an evaluated one (:mod:`.novelty`); None: off
    novelty: float | None = None
    #: choose operators by Thompson sampling on how often they improved (:mod:`.bandit`)
    bandit: bool = False

    def __post_init__(self) -> None:
        if self.population < 2 or self.generations < 0 or self.tournament < 1:
            raise InvalidArgument("need population >= 2, generations >= 0, tournament >= 1; "
                                  f"got {self.population}, {self.generations}, {self.tournament}")
        if not (0 <= self.crossover <= 1 and 0 <= self.mutation <= 1):
            raise InvalidArgument("crossover and mutation are probabilities in [0, 1]; "
                                  f"got {self.crossover}, {self.mutation}")
        if not 0 <= self.elitism < self.population:
            raise InvalidArgument(f"elitism must be in [0, population), got {self.elitism}")
        check_islands(self.islands, self.migration_interval, self.migration_rate)
        if self.archive:
            self._check_archive()
        elif self.features:
            raise InvalidArgument("--features needs --archive map-elites")
        if self.novelty is not None and not 0 < self.novelty <= 1:
            raise InvalidArgument(f"--novelty is a similarity in (0, 1], got {self.novelty}")

    def _check_archive(self) -> None:
        if self.archive not in ARCHIVE_KINDS:
            raise InvalidArgument(f"--archive must be one of {list(ARCHIVE_KINDS)}, "
                                  f"got {self.archive!r}")
        if self.multi_objective:
            raise InvalidArgument("--multi-objective ranks a population; a MAP-Elites archive "
                                  "keeps the best score per cell instead: choose one")
        MapElites(self.features, self.bins)  # refuses bad features or bins, naming them


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
    #: candidates not evaluated: twins of evaluated ones (novelty)
    duplicates: int = 0
    #: genomes that moved between islands this generation
    migrated: int = 0
    #: cascade stage reached -> candidates evaluated this generation
    stages: dict[str, int] = field(default_factory=dict)
    #: per island: best score, its id, occupied archive cells
    islands: list[dict[str, Any]] = field(default_factory=list)


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
    #: every migration, oldest first
    migrations: list[Migration] = field(default_factory=list)
    #: evaluated, duplicates, near_duplicates, migrants: totals over the run
    counters: dict[str, int] = field(default_factory=dict)
    #: the operator bandit's state (:meth:`OperatorBandit.state`), or None
    bandit: dict[str, Any] | None = None
    #: per island with an archive: its cells {"b1,b2": elite id}
    archives: list[dict[str, str]] = field(default_factory=list)
    #: why the run ended before ``config.generations`` (a budget spent), else ""
    stopped: str = ""


class Reporter(Protocol):
    """What a user interface hears from the loop."""

    def on_progress(self, generation: int, done: int, total: int) -> None: ...

    def on_generation(self, stats: GenerationStats) -> None: ...


class GeneticAlgorithm:
    """DEAP-style generational loop over genomes (see the module docstring)."""

    def __init__(self, seed: Genome, evaluate: Evaluator, config: GAConfig = GAConfig(), *,
                 operators: Mapping[str, Operator] | None = None, store: RunStore | None = None,
                 reporter: Reporter | None = None,
                 extensions: Sequence[RunExtension] = (),
                 stream: Callable[[], EvaluationStream] | None = None) -> None:
        self.seed, self.config, self.store, self.reporter = seed, config, store, reporter
        self.extensions = list(extensions)
        self._stopped = ""  # why the run ended early (an extension's stop_reason)
        self._evaluate = evaluate
        # Offspring go to the evaluators as they are made, unless novelty may still swap
        # them for others after the generation is bred.
        self._streams = stream if config.novelty is None else None
        self._stream: EvaluationStream | None = None  # open while the run runs
        ops = dict(operators or default_operators())
        self._mutations = [op for name, op in sorted(ops.items()) if not name.startswith("cx_")]
        self._crossovers = [ops[name] for name in CROSSOVER_OPERATORS if name in ops]
        self._cache: dict[str, Evaluation] = {}
        self._genomes: dict[str, Genome] = {seed.id: seed}
        self._islands: list[Island] = []
        self._seen: set[str] = set()  # evaluated by the last committed generation
        self._novelty = None if config.novelty is None else NoveltyIndex(config.novelty)
        self._choice = OperatorChoice(sorted(ops), bandit=config.bandit)
        self._counters: Counter[str] = Counter()
        self._migrations: list[Migration] = []
        self._commits = CommitBehind()

    # -- the loop -------------------------------------------------------

    def run(self, *, resume: bool = False) -> GAResult:
        """Run to ``config.generations``; with ``resume``, continue the store's last run."""
        run_id, state = self._resume() if resume else (self._start(), None)
        self._stream = self._streams() if self._streams is not None else None
        collector = gc.get_threshold()
        # Breeding allocates AST nodes by the hundred thousand and keeps thousands in its
        # caches: with the default thresholds the older generations were collected again
        # and again for no garbage (an eighth of breeding). Young objects are still
        # collected as usual; the caller's thresholds come back when the run ends.
        gc.set_threshold(collector[0], max(collector[1], 50), max(collector[2], 100))
        try:
            if state is None:
                rng = random.Random(self.config.seed)
                islands = [Island(self._initial(rng), self._new_archive())
                           for _ in range(self.config.islands)]
                state = self._settle(run_id, 0, islands, rng, None, time.monotonic())
            while state.generation < self.config.generations and not self._stopping():
                started, rng = time.monotonic(), rng_from_state(state.rng)
                islands = [self._breed(island, rng) for island in self._islands]
                state = self._settle(run_id, state.generation + 1, islands, rng, state, started)
            self._commits.wait()
        except BaseException:
            with contextlib.suppress(Exception):  # the run's error goes up, not a commit's
                self._commits.wait()
            raise
        finally:
            gc.set_threshold(*collector)
            if self._stream is not None:
                self._stream.close()
                self._stream = None
        return self._result(run_id, state)

    def evaluation(self, genome_id: str) -> Evaluation | None:
        """The evaluation of ``genome_id`` in this run, if it has one yet."""
        return self._cache.get(genome_id)

    def _stopping(self) -> bool:
        """Whether an extension ends the run here (the reason kept for the result)."""
        self._stopped = next((r for r in (e.stop_reason() for e in self.extensions) if r), "")
        return bool(self._stopped)

    def _begin(self, run_id: str) -> None:
        context = RunContext(run_id, self.store, self.evaluation)
        for extension in self.extensions:
            extension.begin(context)

    def _initial(self, rng: random.Random) -> list[Genome]:
        population = [self.seed]
        self._offer(self.seed)
        while len(population) < self.config.population:
            population.append(self._offer(self._mutate(rng.choice(population), rng)))
        return population

    def _breed(self, island: Island, rng: random.Random) -> Island:
        if island.archive is None:
            return Island(self._next(island.population, rng))
        parents = [self._genomes[island.archive.sample(rng)]
                   for _ in range(self.config.population)]
        return Island(self._vary(parents, rng, mutation=1.0), island.archive)

    def _next(self, population: list[Genome], rng: random.Random) -> list[Genome]:
        ranked = self._ranked(population)
        elites = ranked[:self.config.elitism]
        keys = [self._key(g, population) for g in population]  # once, not per aspirant
        parents = [self._tournament(population, keys, rng)
                   for _ in range(self.config.population - len(elites))]
        return elites + self._vary(parents, rng)

    def _vary(self, parents: list[Genome], rng: random.Random,
              mutation: float | None = None) -> list[Genome]:
        """DEAP's varAnd, pair by pair: cross neighbouring pairs, then mutate each child.

        Each child has the chances varAnd gives it (crossed with p = crossover,
        then mutated with p = mutation); unlike varAnd, which crosses every pair
        before it mutates anyone, a pair is finished (and offered to the
        evaluators) before the next one is crossed, so evaluation runs while
        the rest is bred instead of waiting for the whole generation's crossovers.
        """
        p_mutation = self.config.mutation if mutation is None else mutation
        offspring = list(parents)
        for start in range(0, len(offspring), 2):
            if start + 1 < len(offspring) and rng.random() < self.config.crossover:
                a, b = offspring[start], offspring[start + 1]
                offspring[start], offspring[start + 1] = (self._cross(a, b, rng),
                                                          self._cross(b, a, rng))
            for i in range(start, min(start + 2, len(offspring))):
                if rng.random() < p_mutation:
                    offspring[i] = self._mutate(offspring[i], rng)
                self._offer(offspring[i])  # final now: nothing later in the generation changes it
        return offspring

    def _offer(self, genome: Genome) -> Genome:
        """Start evaluating ``genome`` at once if it is new and a stream is open."""
        if self._stream is not None and genome.id not in self._cache:
            self._stream.submit(genome)
        return genome

    def _settle(self, run_id: str, generation: int, islands: list[Island],
                rng: random.Random, previous: GenerationState | None,
                started: float) -> GenerationState:
        """Skip twins, evaluate what is new, learn from it, migrate; commit the generation."""
        twins = self._skip_twins(islands, rng)
        new = self._unseen(islands)
        self._evaluate_new(new, generation, run_id)
        self._learn(new, islands)
        moves = self._migrate(generation, islands)
        self._islands = islands
        population = [g for island in islands for g in island.population]
        best = previous.best if previous is not None else ""
        best_key = self._key(self._genomes[best], population) if best else None
        for genome in population:
            key = self._key(genome, population)
            if best_key is None or key > best_key:
                best, best_key = genome.id, key
        stats = self._stats(generation, population, new, len(twins), moves, started, best)
        state = self._state(generation, population, rng, best, previous, stats, moves)
        store, reporter = self.store, self.reporter

        def report() -> None:
            if reporter is not None:
                reporter.on_generation(stats)

        if store is None:
            report()
        else:  # on a thread, while the next generation is bred (:mod:`.commit_behind`)
            self._commits.submit(
                lambda: store.commit_generation(run_id, state, duplicates=twins), report)
        return state

    # -- novelty, learning, migration -----------------------------------

    def _skip_twins(self, islands: list[Island],
                    rng: random.Random) -> list[tuple[Genome, Twin]]:
        """Mutate each twin of an evaluated genome again, or put the twin in its place."""
        if self._novelty is None:
            return []
        skipped = replace_twins(self._novelty, [i.population for i in islands], self._seen,
                                self._genomes, remake=lambda genome: self._mutate(genome, rng))
        near = sum(1 for _, twin in skipped if twin.similarity < 1.0)
        self._counters.update(duplicates=len(skipped) - near, near_duplicates=near)
        return skipped

    def _unseen(self, islands: list[Island]) -> list[Genome]:
        """Distinct genomes no committed generation evaluated, in population order."""
        found = {g.id: g for island in islands for g in island.population}
        return [g for g in found.values() if g.id not in self._seen]

    def _learn(self, new: list[Genome], islands: list[Island]) -> None:
        """Place the new ones in their island's archive; tell the bandit what improved."""
        self._seen.update(g.id for g in new)
        self._counters.update(evaluated=len(new))
        new_ids = {g.id for g in new}
        for island in islands:
            if island.archive is not None:
                for genome in [g for g in island.population if g.id in new_ids]:
                    island.archive.insert(genome.id, self._cache[genome.id])
        self._choice.learn(new, self._cache)

    def _migrate(self, generation: int, islands: list[Island]) -> list[Migration]:
        interval = self.config.migration_interval
        if generation == 0 or generation % interval or len(islands) < 2:
            return []
        population = [g for island in islands for g in island.population]
        moves = ring_migration(
            islands, generation, migrants(self.config.population, self.config.migration_rate),
            genomes=self._genomes, cache=self._cache, key=lambda g: self._key(g, population))
        self._migrations.extend(moves)
        self._counters.update(migrants=sum(len(m.genomes) for m in moves))
        return moves

    def _new_archive(self) -> MapElites | None:
        return MapElites(self.config.features, self.config.bins) if self.config.archive else None

    # -- operators ------------------------------------------------------

    def _mutate(self, genome: Genome, rng: random.Random) -> Genome:
        return self._first_child(self._mutations, genome, (), rng) or genome

    def _cross(self, genome: Genome, mate: Genome, rng: random.Random) -> Genome:
        if genome.id == mate.id:
            return genome
        return self._first_child(self._crossovers, genome, (mate,), rng) or genome

    def _first_child(self, operators: Sequence[Operator], genome: Genome,
                     donors: Sequence[Genome], rng: random.Random) -> Genome | None:
        """Try the operators in a random (or the bandit's) order; the first child wins."""
        for operator in self._choice.order(operators, rng):
            child = operator.apply(genome, rng, donors=donors)
            if child is not None:
                self._genomes.setdefault(child.id, child)
                self._choice.made(child)
                return child
        return None

    # -- selection ------------------------------------------------------

    def _tournament(self, population: list[Genome], keys: list[tuple[float, ...]],
                    rng: random.Random) -> Genome:
        """DEAP's selTournament: the best of ``tournament`` drawn with replacement."""
        aspirants = [rng.randrange(len(population)) for _ in range(self.config.tournament)]
        return population[max(aspirants, key=keys.__getitem__)]  # first of equals

    def _ranked(self, population: list[Genome]) -> list[Genome]:
        """Distinct genomes, best first; equal keys in id order, so nothing depends on luck."""
        distinct = list({g.id: g for g in population}.values())
        return sorted(distinct, key=lambda g: (_negate(self._key(g, population)), g.id))

    def _key(self, genome: Genome, population: list[Genome]) -> tuple[float, ...]:
        stage, fitness = self._cache[genome.id].merit  # stage: 0 unless the task has a cascade
        if not self.config.multi_objective:
            return (stage, fitness)
        ranks = self._ranks_for(population)
        return (stage, -ranks.get(genome.id, math.inf), fitness)

    def _ranks_for(self, population: list[Genome]) -> dict[str, float]:
        ids = tuple(sorted({g.id for g in population}))
        if getattr(self, "_rank_ids", None) != ids:
            self._rank_ids = ids
            self._rank_cache = pareto_ranks({i: self._cache[i] for i in ids})
        return self._rank_cache

    # -- evaluation and bookkeeping ----------------------------------------

    def _evaluate_new(self, new: list[Genome], generation: int, run_id: str) -> None:
        """Evaluate the new genomes this run has no result for (a killed run may have some)."""
        for genome in new:
            self._genomes.setdefault(genome.id, genome)
        todo = [g for g in new if g.id not in self._cache]
        stream = self._stream
        if not todo and stream is None:
            return

        def on_batch(genomes: list[Genome], evaluations: list[Evaluation]) -> None:
            if self.store is not None:
                self._commits.wait()  # the last generation's commit comes first
                self.store.record(run_id, genomes, evaluations)

        def on_progress(done: int, total: int) -> None:
            if self.reporter is not None:
                self.reporter.on_progress(generation, done, total)

        if stream is None:
            self._cache.update(self._evaluate(todo, on_batch=on_batch, on_progress=on_progress))
            return
        for genome in todo:  # each was offered as it was bred; submit() skips repeats
            stream.submit(genome)
        self._cache.update(stream.results(on_batch=on_batch, on_progress=on_progress))

    def _stats(self, generation: int, population: list[Genome], new: list[Genome],
               duplicates: int, moves: list[Migration], started: float,
               best: str) -> GenerationStats:
        scores = [self._cache[g.id].fitness for g in population]
        finite = [s for s in scores if math.isfinite(s)]
        elites = [i for island in self._islands if island.archive is not None
                  for i in island.archive.elites()[:1]]  # offspring need not keep the best
        top = max([g.id for g in population] + elites, key=lambda i: self._cache[i].merit)
        fresh = [self._cache[g.id] for g in new]
        kinds = [e.kind for e in fresh]
        return GenerationStats(
            generation=generation, best=self._cache[top].fitness, median=statistics.median(finite)
            if finite else -math.inf, evaluated=len(fresh),
            reused=len({g.id for g in population}) - len(fresh), crashes=kinds.count("crash")
            + kinds.count("memory"), timeouts=kinds.count("timeout"), gamed=kinds.count("gamed"),
            errors=kinds.count("error"), seconds=round(time.monotonic() - started, 6),
            best_id=best, duplicates=duplicates, migrated=sum(len(m.genomes) for m in moves),
            stages=dict(sorted(Counter(str(e.stage) for e in fresh if e.stage).items())),
            islands=[self._island_row(island, best) for island in self._islands]
            if len(self._islands) > 1 or self.config.archive else [])

    def _island_row(self, island: Island, winner: str) -> dict[str, Any]:
        ids = {g.id for g in island.population} | set(
            island.archive.elites() if island.archive is not None else ())
        # the first of equals: the run's best if it is here, else the smallest id
        best = max(sorted(ids, key=lambda i: (i != winner, i)), key=lambda i: self._cache[i].merit)
        row: dict[str, Any] = {"best": self._cache[best].fitness, "best_id": best}
        if island.archive is not None:
            row["cells"] = len(island.archive)
        return row

    def _state(self, generation: int, population: list[Genome], rng: random.Random, best: str,
               previous: GenerationState | None, stats: GenerationStats,
               moves: list[Migration]) -> GenerationState:
        return GenerationState(
            generation, [g.id for g in population], rng_state(rng), best,
            [*(previous.history if previous is not None else ()), asdict(stats)],
            islands=[{"population": [g.id for g in island.population],
                      "archive": None if island.archive is None else island.archive.state()}
                     for island in self._islands] if stats.islands else [],  # else: population
            bandit=self._choice.state(),
            counters=dict(sorted(self._counters.items())),
            migrations=[*(previous.migrations if previous is not None else ()),
                        *(m.to_json() for m in moves)],
            extras={e.name: e.snapshot(generation) for e in self.extensions})

    def _result(self, run_id: str, state: GenerationState) -> GAResult:
        best = self._genomes[state.best]
        return GAResult(
            run_id, self.seed, best, self._cache[best.id],
            [g for island in self._islands for g in island.population],
            [GenerationStats(**row) for row in state.history], len(self._cache),
            list(self._migrations), dict(state.counters), state.bandit,
            [island.archive.cells() for island in self._islands if island.archive is not None],
            stopped=self._stopped)

    def _start(self) -> str:
        run_id = uuid.uuid4().hex[:12]
        if self.store is not None:
            self.store.start_run(run_id, asdict(self.config), self.seed)
        self._begin(run_id)
        return run_id

    def _resume(self) -> tuple[str, GenerationState | None]:
        if self.store is None:
            raise InvalidArgument("resume needs a run store (a --run-dir with an earlier run)")
        latest = self.store.latest_run()
        if latest is None:
            raise InvalidArgument(f"no run to resume in {self.store.path}; start one first")
        run_id, info = latest
        config = json.loads(json.dumps(asdict(self.config)))  # as stored: tuples are lists
        # A run from before an option existed ran with that option's default.
        stored = {**json.loads(json.dumps(asdict(GAConfig()))), **info["config"]}
        if info["seed"] != self.seed.id or stored != config:
            raise InvalidArgument(
                f"run {run_id} in {self.store.path} was started with seed {info['seed']} and "
                f"config {info['config']}; resume it with the same agent and options")
        self._cache = self.store.evaluations(run_id)
        states = self.store.generations(run_id)
        if states:
            self._restore(states)
        self._begin(run_id)
        if states:
            for extension in self.extensions:
                extension.restore(states[-1].generation,
                                  states[-1].extras.get(extension.name, {}))
        return run_id, states[-1] if states else None

    def _restore(self, states: list[GenerationState]) -> None:
        """Islands, archives, bandit, counters and the novelty index as last committed."""
        assert self.store is not None
        state = states[-1]
        self._seen = {i for s in states for i in s.population}
        wanted = set(self._seen) if self._novelty is not None else {*state.population}
        wanted |= {state.best} | {i for s in state.islands if s.get("archive")
                                  for i in s["archive"]["members"]}
        for genome_id in sorted(wanted):
            self._genomes.setdefault(genome_id, self.store.genome(genome_id))
        islands = state.islands or [{"population": state.population, "archive": None}]
        self._islands = [Island([self._genomes[i] for i in s["population"]],
                                None if s["archive"] is None else MapElites.load(s["archive"]))
                         for s in islands]
        self._choice.restore(state.bandit)
        self._counters = Counter(state.counters)
        self._migrations = [Migration.from_json(m) for m in state.migrations]
        if self._novelty is not None:
            for genome_id in sorted(self._seen):
                self._novelty.add(self._genomes[genome_id])


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
