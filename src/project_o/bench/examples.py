"""The ``examples/`` of a source checkout, found and evolved for benchmarks."""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from project_o.evolution.genetic import EvaluationStream, GAConfig, GAResult, GeneticAlgorithm
from project_o.evolution.genome import Genome
from project_o.evolution.novelty import Twin
from project_o.evolution.population import EvaluatorPool
from project_o.evolution.run_store import GenerationState, RunStore
from project_o.evolution.task import Evaluation

__all__ = ["Timings", "evolve_example", "example_dir"]


def example_dir(name: str) -> Path:
    """``examples/NAME`` above the installed package or under the working directory.

    Raises :class:`FileNotFoundError` outside a source checkout.
    """
    here = Path(__file__).resolve()
    for root in (*here.parents, Path.cwd()):
        candidate = root / "examples" / name
        if (candidate / "agent.py").is_file():
            return candidate
    raise FileNotFoundError(f"examples/{name} not found; run from a source checkout")


@dataclass
class Timings:
    """Where a run's wall time went, summed over runs (seconds)."""

    #: the whole run
    total_s: float = 0.0
    #: handing candidates to the sandboxed evaluators and waiting for the last results
    #: (the catalog writes meanwhile excepted)
    evaluation_s: float = 0.0
    #: writing evaluations into the catalog (the loop's own writes)
    recording_s: float = 0.0
    #: committing generations (fsynced), on a thread while the next one is bred: not part
    #: of the loop's time, except where it waited for one (counted where it waited)
    commit_s: float = 0.0
    #: candidates evaluated, and the seconds they ran inside the evaluators (load +
    #: evaluate + tamper check), on other cores, mostly while the next ones were bred
    candidates: int = 0
    candidate_s: float = 0.0
    #: CPU seconds on every core: this process's and the evaluators' (zygote + children)
    cpu_s: float = 0.0
    #: the evaluators' part of :attr:`cpu_s`
    evaluators_cpu_s: float = 0.0

    def count(self, evaluations: dict[str, Evaluation]) -> dict[str, Evaluation]:
        """Add ``evaluations`` to :attr:`candidates` and :attr:`candidate_s`; return them."""
        self.candidates += len(evaluations)
        self.candidate_s += sum(float(e.metrics.get("time_s") or 0.0)
                                for e in evaluations.values())
        return evaluations

    @property
    def breeding_s(self) -> float:
        """The rest: selection, operators, genome ids, bookkeeping of the loop."""
        return self.total_s - self.evaluation_s - self.recording_s


class _TimedStore(RunStore):
    """A RunStore that adds the time of its writes to ``timings`` (records, commits)."""

    def __init__(self, run_dir: str, timings: Timings) -> None:
        super().__init__(run_dir)
        self.timings = timings

    def record(self, run_id: str, genomes: Sequence[Genome],
               evaluations: Sequence[Evaluation]) -> None:
        started = time.perf_counter()
        try:
            super().record(run_id, genomes, evaluations)
        finally:
            self.timings.recording_s += time.perf_counter() - started

    def commit_generation(self, run_id: str, state: GenerationState,
                          duplicates: Sequence[tuple[Genome, Twin]] = ()) -> None:
        started = time.perf_counter()
        try:
            super().commit_generation(run_id, state, duplicates)
        finally:
            self.timings.commit_s += time.perf_counter() - started


def evolve_example(example: Path, config: GAConfig, pool: EvaluatorPool,
                   timings: Timings | None = None) -> GAResult:
    """One durable GA run on ``example/agent.py`` (its run store in a temporary directory).

    With ``timings``, the run's wall time is added to it, split as :class:`Timings` says.
    """
    timings = timings if timings is not None else Timings()
    with tempfile.TemporaryDirectory(prefix=f"{example.name}-run-") as run_dir:
        store = _TimedStore(run_dir, timings)

        def evaluate(genomes: Sequence[Genome], **hooks: Any) -> dict[str, Evaluation]:
            with _waiting(timings):
                return timings.count(pool.evaluate(genomes, **hooks))

        def stream() -> EvaluationStream:
            with _waiting(timings):
                return _TimedStream(pool.stream(), timings)

        started, cpu, evaluators = time.perf_counter(), _cpu(pool), pool.cpu_seconds() or 0.0
        try:
            return GeneticAlgorithm(Genome.from_path(example / "agent.py"), evaluate,
                                    config, store=store, stream=stream).run()
        finally:
            store.close()
            timings.total_s += time.perf_counter() - started
            timings.cpu_s += _cpu(pool) - cpu
            timings.evaluators_cpu_s += (pool.cpu_seconds() or 0.0) - evaluators


def _cpu(pool: EvaluatorPool) -> float:
    """This process's CPU time plus the evaluators' (theirs counted once reaped)."""
    return time.process_time() + (pool.cpu_seconds() or 0.0)


@contextlib.contextmanager
def _waiting(timings: Timings) -> Iterator[None]:
    """Add the time inside to ``timings.evaluation_s``, less the store's writes inside it."""
    started, recorded = time.perf_counter(), timings.recording_s
    try:
        yield
    finally:
        timings.evaluation_s += (time.perf_counter() - started
                                 - (timings.recording_s - recorded))


class _TimedStream:
    """An evaluation stream whose calls count as evaluation in ``timings``."""

    def __init__(self, stream: EvaluationStream, timings: Timings) -> None:
        self._stream, self._timings = stream, timings

    def submit(self, genome: Genome) -> None:
        # _waiting, inlined: this runs for every offspring, and a context manager's
        # generator was a few percent of the loop's time, charged to Project O.
        timings = self._timings
        started, recorded = time.perf_counter(), timings.recording_s
        try:
            self._stream.submit(genome)
        finally:
            timings.evaluation_s += (time.perf_counter() - started
                                     - (timings.recording_s - recorded))

    def results(self, **hooks: Any) -> dict[str, Evaluation]:
        with _waiting(self._timings):
            return self._timings.count(self._stream.results(**hooks))

    def close(self) -> None:
        self._stream.close()
