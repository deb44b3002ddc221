"""The genetic algorithm's evaluations on a Ray cluster.

Each Ray task runs a small :class:`~project_o.evolution.population.EvaluatorPool`
on its worker — the same sandboxed, forked evaluators as a local run — so a
candidate never runs inside a Ray worker, a crash costs only that candidate,
and a fixed seed gives the same result on Ray as locally. Durability stays
with the caller: ``on_batch`` runs here, as each Ray task's results arrive::

    GA ── evaluate(genomes) ──► chunks ──► ray task: EvaluatorPool(task).evaluate(chunk)
       ◄── {id: Evaluation} ◄── on_batch(chunk, results) as each chunk returns
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

from project_o.evolution.genome import Genome
from project_o.evolution.population import BatchCallback, EvaluatorPool, ProgressCallback
from project_o.evolution.ray_backend import start_local_cluster
from project_o.evolution.task import Evaluation

__all__ = ["RayPopulation"]

#: candidates per Ray task: enough to amortise a pool start, small enough to spread
CHUNK = 16


def _evaluate_chunk(genomes: list[Genome], task_name: str, task_text: str,
                    timeout_s: float, memory_mb: int | None) -> list[dict[str, Any]]:
    """Body of one Ray task: a one-worker evaluator pool on this node."""
    with tempfile.TemporaryDirectory(prefix="project-o-ray-") as home:
        task = Path(home) / task_name
        task.write_text(task_text)
        with EvaluatorPool(task, workers=1, timeout_s=timeout_s, memory_mb=memory_mb) as pool:
            results = pool.evaluate(genomes)
    return [{"genome_id": e.genome_id, "metrics": e.metrics, "failure": e.failure}
            for e in results.values()]


class RayPopulation:
    """``evaluate`` with the signature of :meth:`EvaluatorPool.evaluate`, on Ray."""

    def __init__(self, task: str | Path, *, address: str | None = None,
                 timeout_s: float, memory_mb: int | None, num_cpus: int | None = None) -> None:
        import ray

        self._ray = ray
        self._owns = not ray.is_initialized()
        if self._owns:
            if address is None:
                start_local_cluster(num_cpus)
            else:
                ray.init(address=address, log_to_driver=False, configure_logging=False)
        self._task = Path(task)
        self._text = self._task.read_text()
        self._timeout_s, self._memory_mb = timeout_s, memory_mb
        self._remote = ray.remote(num_cpus=1, max_retries=0)(_evaluate_chunk)

    def evaluate(self, genomes: Sequence[Genome], *, on_batch: BatchCallback | None = None,
                 on_progress: ProgressCallback | None = None) -> dict[str, Evaluation]:
        """Evaluate each distinct genome once; results by genome id."""
        unique = list({g.id: g for g in genomes}.values())
        chunks = [unique[i:i + CHUNK] for i in range(0, len(unique), CHUNK)]
        pending = {self._remote.remote(chunk, self._task.name, self._text, self._timeout_s,
                                       self._memory_mb): chunk for chunk in chunks}
        results: dict[str, Evaluation] = {}
        while pending:
            [ready], _ = self._ray.wait(list(pending), num_returns=1)
            chunk = pending.pop(ready)
            evaluations = [Evaluation(**row) for row in self._ray.get(ready)]
            if on_batch is not None:
                on_batch(chunk, evaluations)
            results.update({e.genome_id: e for e in evaluations})
            if on_progress is not None:
                on_progress(len(results), len(unique))
        return results

    def close(self) -> None:
        """Shut down the cluster if this object started it."""
        if self._owns:
            self._ray.shutdown()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
