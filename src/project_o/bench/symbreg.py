"""``project-o bench symbreg``: symbolic regression, Project O's GA against DEAP's eaSimple.

::

    for each seed:   Project O   GeneticAlgorithm on examples/symbolic_regression
                                  (every candidate loaded as a module and evaluated in a
                                  sandboxed evaluator child, streamed there while the
                                  generation is bred; every evaluation recorded in a
                                  catalog, each generation committed with an fsync)
                     DEAP        eaSimple on DEAP's own symbreg example (its primitive
                                  set, cxOnePoint, mutUniform, tournament 3), in-process
                     same budget: population 300, 40 generations (quick: 3 seeds, 100 x 15)

    success = the best candidate's MSE on the 20 points < 1e-6
    figures:  success rate, median wall time per run, for each side; in the notes (and
              ``details`` in --json) the mean time per run in breeding, evaluation and
              recording (DEAP: its evaluate, the rest), and the CPU time on every core

Targets (docs/design.md, "Targets"): success rate >= DEAP's; median wall time <= 2x DEAP's.
DEAP is the baseline: without it the benchmark stops before running
anything, with the command that installs it (:data:`INSTALL_DEAP`); a
comparison is never silently skipped. The notes say where each side's
time went: Project O's breeding (selection, operators), evaluation (handing
candidates to the evaluators, waiting for the last results; their own work
runs on other cores) and recording (the evaluations' catalog writes; each
generation's commit and its fsync run on a thread while the next generation
is bred, timed apart); DEAP's evaluate (timed around each call, which costs
it well under 1 %) and the rest. The CPU figure counts the evaluators too.
"""

from __future__ import annotations

import math
import operator
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from project_o.bench.examples import Timings, evolve_example, example_dir
from project_o.bench.report import BaselineMissing, Report
from project_o.evolution.genetic import GAConfig
from project_o.evolution.population import EvaluatorPool

__all__ = ["FULL", "INSTALL_DEAP", "QUICK", "SOLVED_MSE", "require_deap", "run", "run_deap",
           "run_project_o"]

#: (seeds, population, generations): the compared budget (docs/design.md, "Targets"), and a smoke-sized one
FULL: Final = (30, 300, 40)
QUICK: Final = (3, 100, 15)
#: DEAP's symbreg example settings for what our loop shares with it
CROSSOVER, MUTATION, TOURNAMENT, ELITISM = 0.5, 0.1, 3, 1
#: success threshold on the mean squared error
SOLVED_MSE: Final = 1e-6
POINTS: Final = [x / 10.0 for x in range(-10, 10)]
#: what installs the baseline (the ``bench`` extra pins the same requirement)
INSTALL_DEAP: Final = 'python3 -m pip install "deap>=1.4"'


def require_deap() -> None:
    """Raise :class:`BaselineMissing` with :data:`INSTALL_DEAP` unless DEAP imports."""
    try:
        import deap  # noqa: F401 - only to know whether the baseline can run
    except ImportError as exc:
        raise BaselineMissing(
            "symbreg compares with DEAP, which is not installed; install it with\n"
            f"    {INSTALL_DEAP}\n"
            '(or the bench extra from a checkout: python3 -m pip install -e ".[bench]")'
        ) from exc


def run_project_o(seed: int, population: int, generations: int, pool: EvaluatorPool,
                  example: Path, timings: Timings | None = None) -> tuple[bool, float, float]:
    """One Project O run: (solved, best MSE, wall seconds); its time split added to ``timings``."""
    config = GAConfig(population=population, generations=generations, tournament=TOURNAMENT,
                      crossover=CROSSOVER, mutation=MUTATION, elitism=ELITISM, seed=seed)
    started = time.perf_counter()
    result = evolve_example(example, config, pool, timings)
    mse = -result.evaluation.fitness if result.evaluation.ok else math.inf
    return mse < SOLVED_MSE, mse, time.perf_counter() - started


def run_deap(seed: int, population: int, generations: int,
             timings: Timings | None = None) -> tuple[bool, float, float]:
    """DEAP's symbreg example (eaSimple) with the same budget: (solved, best MSE, seconds).

    With ``timings``, its wall time and the part spent in its evaluate are added to it.
    """
    from deap import algorithms, base, creator, gp, tools  # the bench extra

    started, cpu = time.perf_counter(), time.process_time()
    random.seed(seed)  # DEAP draws from the global random module
    pset = gp.PrimitiveSet("MAIN", 1)
    for primitive, arity in ((operator.add, 2), (operator.sub, 2), (operator.mul, 2),
                             (_protected_div, 2), (operator.neg, 1), (math.cos, 1),
                             (math.sin, 1)):
        pset.addPrimitive(primitive, arity)
    pset.addEphemeralConstant("rand101", _rand101)
    pset.renameArguments(ARG0="x")
    if not hasattr(creator, "FitnessMin"):
        creator.create("FitnessMin", base.Fitness, weights=(-1.0,))
        creator.create("Individual", gp.PrimitiveTree, fitness=creator.FitnessMin)
    clock = timings if timings is not None else Timings()
    toolbox = base.Toolbox()
    toolbox.register("expr", gp.genHalfAndHalf, pset=pset, min_=1, max_=2)
    toolbox.register("individual", tools.initIterate, creator.Individual, toolbox.expr)
    toolbox.register("population", tools.initRepeat, list, toolbox.individual)
    toolbox.register("evaluate", _timed_mse, pset=pset, timings=clock)
    toolbox.register("select", tools.selTournament, tournsize=TOURNAMENT)
    toolbox.register("mate", gp.cxOnePoint)
    toolbox.register("expr_mut", gp.genFull, min_=0, max_=2)
    toolbox.register("mutate", gp.mutUniform, expr=toolbox.expr_mut, pset=pset)
    limit = gp.staticLimit(key=operator.attrgetter("height"), max_value=17)
    toolbox.decorate("mate", limit)
    toolbox.decorate("mutate", limit)
    hof = tools.HallOfFame(1)
    algorithms.eaSimple(toolbox.population(n=population), toolbox, CROSSOVER, MUTATION,
                        generations, halloffame=hof, verbose=False)
    mse = hof[0].fitness.values[0]
    seconds = time.perf_counter() - started
    clock.total_s += seconds
    clock.cpu_s += time.process_time() - cpu
    return mse < SOLVED_MSE, mse, seconds


def _timed_mse(individual: Any, pset: Any, timings: Timings) -> tuple[float]:
    started = time.perf_counter()
    try:
        return _deap_mse(individual, pset)
    finally:
        timings.evaluation_s += time.perf_counter() - started
        timings.candidates += 1


def _protected_div(left: float, right: float) -> float:
    try:
        return left / right
    except ZeroDivisionError:
        return 1.0


def _rand101() -> int:
    return random.randint(-1, 1)


def _deap_mse(individual: Any, pset: Any) -> tuple[float]:
    from deap import gp

    func = gp.compile(individual, pset)
    errors = [(func(x) - x**4 - x**3 - x**2 - x) ** 2 for x in POINTS]
    return (math.fsum(errors) / len(POINTS),)


def _summary(name: str, runs: list[tuple[bool, float, float]]) -> dict[str, Any]:
    return {"system": name, "runs": len(runs),
            "success_rate": sum(solved for solved, _, _ in runs) / len(runs),
            "median_wall_s": statistics.median(seconds for _, _, seconds in runs),
            "median_best_mse": statistics.median(mse for _, mse, _ in runs)}


def _split(timings: Timings, runs: int) -> dict[str, float]:
    """Mean seconds per run in each part (see _where_time_went), and the CPU on every core."""
    return {"breeding_s": round(timings.breeding_s / runs, 4),
            "evaluation_s": round(timings.evaluation_s / runs, 4),
            "recording_s": round(timings.recording_s / runs, 4),
            "commit_s": round(timings.commit_s / runs, 4),
            # every core's CPU time: the figure the machine's load does not inflate
            "cpu_s": round(timings.cpu_s / runs, 4),
            "evaluators_cpu_s": round(timings.evaluators_cpu_s / runs, 4),
            "evaluations": round(timings.candidates / runs),
            "evaluator_s": round(timings.candidate_s / runs, 4)}


def run(quick: bool, progress: Callable[[str], None]) -> Report:
    """Run the benchmark; see the module docstring."""
    require_deap()  # before minutes of work whose comparison could not be made
    seeds, population, generations = QUICK if quick else FULL
    report = Report("symbreg", quick)
    example = example_dir("symbolic_regression")
    ours: list[tuple[bool, float, float]] = []
    theirs: list[tuple[bool, float, float]] = []
    timings, deap_timings = Timings(), Timings()
    with EvaluatorPool(example / "task.py") as pool:
        for seed in range(seeds):
            # Interleaved, so both sides see the same load on a shared machine.
            ours.append(run_project_o(seed, population, generations, pool, example, timings))
            theirs.append(run_deap(seed, population, generations, deap_timings))
            progress(f"seed {seed}: project-o solved={ours[-1][0]} {ours[-1][2]:.1f} s, "
                     f"deap solved={theirs[-1][0]} {theirs[-1][2]:.1f} s")
    report.rows.append(_summary("project-o (isolated, durable)", ours))
    report.rows.append(_summary("deap eaSimple (in-process)", theirs))
    report.details["time_per_run"] = {"project-o": _split(timings, seeds),
                                      "deap": _split(deap_timings, seeds)}
    report.notes.append(f"budget: population {population}, {generations} generations, "
                        f"{seeds} seeds; crossover {CROSSOVER}, mutation {MUTATION}, "
                        f"tournament {TOURNAMENT}; project-o elitism {ELITISM}, "
                        f"{pool.stream_workers} evaluator worker(s) beside the breeding loop "
                        "(a core each); the two sides alternate seed by "
                        "seed, so both see the same machine load")
    report.notes.append(_where_time_went(timings, seeds))
    report.notes.append(_deap_time(deap_timings, seeds))
    report.notes.append(
        f"CPU time per run (every core: project-o's process, its evaluation zygote and "
        f"children; DEAP's process): {timings.cpu_s / seeds:.2f} s (project-o's process "
        f"{(timings.cpu_s - timings.evaluators_cpu_s) / seeds:.2f} s, the evaluators "
        f"{timings.evaluators_cpu_s / seeds:.2f} s) vs {deap_timings.cpu_s / seeds:.2f} s "
        f"({timings.cpu_s / max(deap_timings.cpu_s, 1e-9):.1f}x); the wall-time ratio is "
        "lower where spare cores run the evaluators while the parent breeds, and higher "
        "on a loaded machine")
    ours_row, deap_row = report.rows
    report.target("success rate vs DEAP", ours_row["success_rate"],
                  f">= {deap_row['success_rate']:.2f}",
                  ours_row["success_rate"] >= deap_row["success_rate"])
    ratio = ours_row["median_wall_s"] / deap_row["median_wall_s"]
    report.target("median wall time / DEAP", ratio, "<= 2.0", ratio <= 2.0)
    return report


def _where_time_went(timings: Timings, runs: int) -> str:
    total = timings.total_s or 1.0
    parts = [("breeding (selection, operators, genome ids)", timings.breeding_s),
             ("evaluation (handing candidates to the evaluators, waiting for the last)",
              timings.evaluation_s),
             ("recording (the evaluations' catalog writes)", timings.recording_s)]
    split = "; ".join(f"{name} {seconds / runs:.2f} s ({seconds / total:.0%})"
                      for name, seconds in parts)
    inside = timings.candidate_s / max(timings.candidates, 1)
    return (f"project-o time per run: {split}; besides, committing each generation "
            f"(fsynced) took {timings.commit_s / runs:.2f} s on a thread while the next was "
            f"bred. The evaluators ran "
            f"{timings.candidates / runs:.0f} candidates per run, "
            f"{inside * 1e6:.0f} us each inside the sandbox (load, evaluate, tamper check; "
            f"{timings.candidate_s / runs:.2f} s per run, on the other cores, mostly while "
            "the generation was still being bred)")


def _deap_time(timings: Timings, runs: int) -> str:
    per_run = timings.evaluation_s / runs
    each = timings.evaluation_s / max(timings.candidates, 1)
    return (f"deap time per run: evaluation {per_run:.2f} s ({timings.candidates / runs:.0f} "
            f"individuals, {each * 1e6:.0f} us each, in-process); the rest "
            f"{timings.breeding_s / runs:.2f} s (selection, variation, bookkeeping)")
