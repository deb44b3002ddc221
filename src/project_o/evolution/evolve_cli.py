"""``project-o evolve --agent A --task T``: the genetic algorithm (or universes) from a terminal.

::

    add_arguments(parser)   the options below, on a parser the main CLI provides
    main(args) -> int       0: a winner was found / reported; 1: the run failed; 2: bad input

    --agent A --task T ─► EvaluatorPool(T) ─► GeneticAlgorithm(seed = A)  ─► summary + diff
                                           │    + LLM proposals (--llm-model, see llm_evolve)
                                           └► run_universes (--universes N) ─► ranked table
    RUN_DIR/VAULT/catalog.sqlite holds every candidate; --resume continues the last run there.

What a user sees: a progress bar per generation, one table row per
generation (best / median score, crashes, timeouts, gamed, time; with the
search options also twins skipped, cascade stages reached, each island's
best, archive cells and migrants), then the winner with its diff against
the seed it came from.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from typing import Any, Final, Self

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from project_o.errors import ProjectOError
from project_o.evolution.archive import ARCHIVE_KINDS
from project_o.evolution.genetic import GAConfig, GAResult, GenerationStats, GeneticAlgorithm
from project_o.evolution.genome import Genome
from project_o.evolution.llm_ensemble import LLMEnsemble
from project_o.evolution.llm_evolve import (
    LLMReporter,
    add_llm_arguments,
    build_ensemble,
    llm_json,
    llm_operators,
    print_llm_summary,
)
from project_o.evolution.novelty import DEFAULT_SIMILARITY
from project_o.evolution.population import DEFAULT_MEMORY_MB, DEFAULT_TIMEOUT_S, EvaluatorPool
from project_o.evolution.run_records import run_recorded_universes
from project_o.evolution.run_store import RunStore
from project_o.evolution.task import ARTIFACTS_KEY
from project_o.evolution.universes import UniversesResult, submit_winner

__all__ = ["DEFAULT_RUN_DIR", "RichReporter", "add_arguments", "main"]

#: where runs are kept when --run-dir is not given (relative to the working directory)
DEFAULT_RUN_DIR: Final = "project-o-evolution"
_DEFAULTS: Final = GAConfig()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``evolve`` options to ``parser``."""
    parser.add_argument("--agent", required=True, help="the seed agent (.py file or package)")
    parser.add_argument("--task", required=True, help="task file with evaluate(agent) -> dict")
    ga = parser.add_argument_group("genetic algorithm")
    ga.add_argument("--population", type=int, default=_DEFAULTS.population)
    ga.add_argument("--generations", type=int, default=_DEFAULTS.generations)
    ga.add_argument("--tournament", type=int, default=_DEFAULTS.tournament,
                    help="aspirants per tournament selection")
    ga.add_argument("--crossover", type=float, default=_DEFAULTS.crossover)
    ga.add_argument("--mutation", type=float, default=_DEFAULTS.mutation)
    ga.add_argument("--elitism", type=int, default=_DEFAULTS.elitism)
    ga.add_argument("--seed", type=int, default=_DEFAULTS.seed, help="drives every choice")
    ga.add_argument("--multi-objective", action="store_true",
                    help="Pareto selection on score, time and memory")
    search = parser.add_argument_group("search: islands, MAP-Elites, novelty, operator choice")
    search.add_argument("--islands", type=int, default=_DEFAULTS.islands, metavar="K",
                        help="K populations on a ring, trading their best")
    search.add_argument("--migration-interval", type=int, metavar="G",
                        default=_DEFAULTS.migration_interval, help="generations between migrations")
    search.add_argument("--migration-rate", type=float, default=_DEFAULTS.migration_rate,
                        metavar="R", help="share of a population that migrates")
    search.add_argument("--archive", choices=ARCHIVE_KINDS, default=_DEFAULTS.archive,
                        help="parents from a MAP-Elites grid over --features")
    search.add_argument("--features", default="", metavar="A,B",
                        help="metrics the task returns that span the grid")
    search.add_argument("--bins", type=int, default=_DEFAULTS.bins, metavar="N",
                        help="cells per feature")
    search.add_argument("--novelty", type=float, nargs="?", const=DEFAULT_SIMILARITY,
                        default=None, metavar="SIMILARITY",
                        help="skip candidates this similar to an evaluated one "
                        f"(default {DEFAULT_SIMILARITY}; 1: equal normalised code only)")
    search.add_argument("--bandit", action="store_true",
                        help="choose operators by Thompson sampling on improvements")
    parser.add_argument("--universes", type=int, default=0, metavar="N",
                        help="instead of the GA: N mutants by different operators, ranked")
    parser.add_argument("--submit", metavar="URL", default=None,
                        help="hand the universes' winner to the supervisor at URL as a canary")
    parser.add_argument("--resume", action="store_true", help="continue the run in --run-dir")
    parser.add_argument("--run-dir", default=DEFAULT_RUN_DIR, help="holds VAULT/catalog.sqlite")
    sandbox = parser.add_argument_group("evaluators")
    sandbox.add_argument("--workers", type=int, default=None, help="default: CPU count")
    sandbox.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                         help="seconds per candidate")
    sandbox.add_argument("--memory-mb", type=int, default=DEFAULT_MEMORY_MB,
                         help="address space per evaluator")
    sandbox.add_argument("--batch-size", type=int, default=None,
                         help="candidates per evaluator process at most (1: one process "
                         "each); default 256 streamed to a run, 64 per batch otherwise")
    sandbox.add_argument("--backend", choices=["local", "ray"], default="local",
                         help="where evaluators run: here, or on a Ray cluster")
    sandbox.add_argument("--address", default=None,
                         help="Ray cluster address (default: start a local one on 127.0.0.1)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    add_llm_arguments(parser)


def main(args: argparse.Namespace) -> int:
    """Run what ``args`` asks for; the exit status."""
    console = Console(stderr=args.json)
    try:
        seed = Genome.from_path(args.agent)
        config = GAConfig(population=args.population, generations=args.generations,
                          tournament=args.tournament, crossover=args.crossover,
                          mutation=args.mutation, elitism=args.elitism, seed=args.seed,
                          multi_objective=args.multi_objective, islands=args.islands,
                          migration_interval=args.migration_interval,
                          migration_rate=args.migration_rate, archive=args.archive or "",
                          features=tuple(f.strip() for f in args.features.split(",")
                                         if f.strip()),
                          bins=args.bins, novelty=args.novelty, bandit=args.bandit)
        with _evaluators(args) as pool:
            if args.universes:
                return _universes(args, seed, pool, console)
            return _genetic(args, seed, config, pool, console)
    except (ProjectOError, ValueError) as exc:
        console.print(f"[red]evolve: {exc}[/red]")
        return 2


def _evaluators(args: argparse.Namespace) -> Any:
    """The local evaluator pool, or the same evaluators spread over a Ray cluster."""
    if args.backend == "ray":
        from project_o.evolution.ray_population import RayPopulation

        return RayPopulation(args.task, address=args.address, timeout_s=args.timeout,
                             memory_mb=args.memory_mb)
    return EvaluatorPool(args.task, workers=args.workers, timeout_s=args.timeout,
                         memory_mb=args.memory_mb, batch_size=args.batch_size)


def _genetic(args: argparse.Namespace, seed: Genome, config: GAConfig, pool: Any,
             console: Console) -> int:
    ensemble = build_ensemble(args)
    store = RunStore(args.run_dir)
    try:
        with RichReporter(console) as rich_reporter:
            reporter: Any = rich_reporter
            if ensemble is not None:
                reporter = LLMReporter(rich_reporter, ensemble, console)
            ga = GeneticAlgorithm(
                seed, pool.evaluate, config, store=store, reporter=reporter,
                operators=None if ensemble is None else llm_operators(ensemble,
                                                                      only=args.llm_only),
                extensions=[] if ensemble is None else [ensemble],
                stream=getattr(pool, "stream", None))  # the local pool's; Ray has none
            result = ga.run(resume=args.resume)
        llm = None if ensemble is None else llm_json(ensemble, store, result.run_id)
    finally:
        store.close()
    if args.json:
        print(json.dumps({**_result_json(result, args.run_dir), "llm": llm}, indent=2))
    else:
        _summary(console, result, args.run_dir, ensemble, llm or {})
    return 0 if result.evaluation.ok else 1


class RichReporter:
    """Progress bar per generation and a table row per generation, on a rich console."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._progress = Progress(TextColumn("generation {task.fields[generation]}"),
                                  BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                  console=console, transient=True)
        self._task: Any = None
        self._generation = -1

    def __enter__(self) -> Self:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def on_progress(self, generation: int, done: int, total: int) -> None:
        if generation != self._generation:
            if self._task is not None:
                self._progress.remove_task(self._task)
            self._task = self._progress.add_task("", total=total, generation=generation)
            self._generation = generation
        self._progress.update(self._task, completed=done, total=total)

    def on_generation(self, stats: GenerationStats) -> None:
        self.console.print(
            f"gen {stats.generation:>3}  best {stats.best:>12.6g}  median {stats.median:>12.6g}"
            f"  new {stats.evaluated:>4}  crashes {stats.crashes}  timeouts {stats.timeouts}"
            f"  gamed {stats.gamed}  errors {stats.errors}  {stats.seconds:6.2f} s"
            + _search_words(stats), markup=False, highlight=False, soft_wrap=True)


def _search_words(stats: GenerationStats) -> str:
    """The search options' part of a row: twins, stages, islands, cells, migrants."""
    words = f"  twins {stats.duplicates}" if stats.duplicates else ""
    if stats.stages:
        words += "  stages " + " ".join(f"{k}:{v}" for k, v in stats.stages.items())
    if stats.islands:
        words += "  islands " + " | ".join(f"{row['best']:.4g}" for row in stats.islands)
        cells = [str(row["cells"]) for row in stats.islands if "cells" in row]
        words += f"  cells {'|'.join(cells)}" if cells else ""
    return words + (f"  migrated {stats.migrated}" if stats.migrated else "")


def _summary(console: Console, result: GAResult, run_dir: str,
             ensemble: LLMEnsemble | None = None, llm: dict[str, Any] | None = None) -> None:
    table = Table(title=f"run {result.run_id}")
    for column in ("gen", "best", "median", "new", "crashes", "timeouts", "gamed", "time s"):
        table.add_column(column, justify="right")
    for s in result.history:
        table.add_row(str(s.generation), f"{s.best:.6g}", f"{s.median:.6g}", str(s.evaluated),
                      str(s.crashes), str(s.timeouts), str(s.gamed), f"{s.seconds:.2f}")
    console.print(table)
    _search_summary(console, result)
    evaluation = result.evaluation
    console.print(f"winner [bold]{result.winner.id}[/bold] ({result.winner.operator}) "
                  f"score {evaluation.fitness:.6g}; {result.evaluations} candidates evaluated; "
                  f"catalog: {run_dir}/VAULT/catalog.sqlite")
    console.print({k: v for k, v in evaluation.metrics.items()
                   if k not in ("score", ARTIFACTS_KEY)})  # artifacts: in --json and the catalog
    if ensemble is not None:
        print_llm_summary(console, ensemble, llm or {}, result.stopped)
    elif result.stopped:
        console.print(f"[yellow]stopped early: {result.stopped}[/yellow]")
    diffs = result.seed.file_diffs(result.winner)
    console.print(f"diff against the seed {result.seed.id}"
                  f"{f', {len(diffs)} files' if len(diffs) > 1 else ''}:")
    for name, diff in diffs.items():
        added, removed = _counts(diff)
        console.print(f"[bold]── {name}[/bold]  +{added} −{removed}")
        console.print(diff, markup=False, highlight=False)
    if not diffs:
        console.print("(no change: the seed won)")


def _counts(diff: str) -> tuple[int, int]:
    lines = diff.splitlines()
    return (sum(1 for x in lines if x.startswith("+") and not x.startswith("+++")),
            sum(1 for x in lines if x.startswith("-") and not x.startswith("---")))


def _search_summary(console: Console, result: GAResult) -> None:
    """Islands, migrations, twins, archive and bandit: only what the run used."""
    last = result.history[-1] if result.history else None
    for number, row in enumerate(last.islands if last is not None else []):
        cells = f", {row['cells']} cells" if "cells" in row else ""
        console.print(f"island {number}: best {row['best']:.6g} ({row['best_id']}){cells}")
    if result.migrations:
        console.print(f"{len(result.migrations)} migrations, "
                      f"{result.counters.get('migrants', 0)} genomes moved")
    twins = result.counters.get("duplicates", 0) + result.counters.get("near_duplicates", 0)
    if twins:
        console.print(f"novelty: {twins} candidates not evaluated ("
                      f"{result.counters.get('near_duplicates', 0)} near duplicates)")
    reached: Counter[str] = Counter()
    for stats in result.history:
        reached.update(stats.stages)
    if reached:
        console.print("cascade: " + ", ".join(
            f"{count} reached stage {stage}" for stage, count in sorted(reached.items())))
    if result.bandit is not None:
        console.print("operator bandit (successes/failures): " + ", ".join(
            f"{name} {s:g}/{f:g}" for name, (s, f) in result.bandit["arms"].items()))


def _result_json(result: GAResult, run_dir: str) -> dict[str, Any]:
    last = result.history[-1] if result.history else None
    return {"run_id": result.run_id, "run_dir": run_dir, "winner": result.winner.id,
            "score": result.evaluation.fitness if result.evaluation.ok else None,
            "metrics": result.evaluation.metrics, "failure": result.evaluation.failure,
            "evaluations": result.evaluations,
            "history": [s.__dict__ for s in result.history],
            "islands": last.islands if last is not None else [],
            "migrations": [m.to_json() for m in result.migrations],
            "counters": result.counters, "bandit": result.bandit, "archives": result.archives,
            "population": [g.id for g in result.population],
            "diff": result.seed.diff(result.winner),
            "diffs": result.seed.file_diffs(result.winner), "stopped": result.stopped}


def _universes(args: argparse.Namespace, seed: Genome, pool: Any,
               console: Console) -> int:
    ensemble = build_ensemble(args)
    operators = None if ensemble is None else llm_operators(ensemble, only=args.llm_only)
    result = run_recorded_universes(args.run_dir, seed, pool.evaluate, args.universes, args.seed,
                                    operators=operators)
    submitted = None
    if args.submit and result.winner is not None:
        submitted = submit_winner(args.submit, result.winner.genome,
                                  token=os.environ.get("PROJECT_O_TOKEN"))
    if args.json:
        llm = None if ensemble is None else ensemble.report()
        print(json.dumps({**_universes_json(result, submitted), "llm": llm}, indent=2))
        return 0
    table = Table(title=f"{len(result.ranked)} universes of {seed.id}")
    for column in ("rank", "operator", "version", "score", "outcome"):
        table.add_column(column)
    for rank, u in enumerate([result.main, *result.ranked]):
        table.add_row("main" if rank == 0 else str(rank), u.operator, u.genome.id,
                      f"{u.evaluation.fitness:.6g}", u.evaluation.kind)
    console.print(table)
    if ensemble is not None:
        print_llm_summary(console, ensemble, {}, "")
    if result.winner is None:
        console.print("no universe beat the main agent")
    else:
        console.print(f"winner {result.winner.genome.id} ({result.winner.operator})")
        console.print(seed.diff(result.winner.genome), markup=False, highlight=False)
    if submitted is not None:
        console.print(f"submitted as a canary: {submitted}")
    return 0


def _universes_json(result: UniversesResult, submitted: Any) -> dict[str, Any]:
    def row(u: Any) -> dict[str, Any]:
        return {"operator": u.operator, "version": u.genome.id, "kind": u.evaluation.kind,
                "metrics": u.evaluation.metrics}
    return {"main": row(result.main), "ranked": [row(u) for u in result.ranked],
            "winner": None if result.winner is None else result.winner.genome.id,
            "submitted": submitted}


if __name__ == "__main__":  # python -m project_o.evolution.evolve_cli, until cli.py wires it
    _parser = argparse.ArgumentParser(prog="project-o evolve")
    add_arguments(_parser)
    sys.exit(main(_parser.parse_args()))
