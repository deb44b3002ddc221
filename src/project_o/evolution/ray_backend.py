"""Evaluating candidates as Ray tasks, on an existing cluster or a local one.

::

    caller ── RayBackend(address).evaluate(genomes, task_path, timeout_s=, memory_mb=)
                 │ the task file's text travels with each call (workers may not share a disk)
                 ▼
    ray.remote task per genome  (num_cpus=1, max_retries=0: a result is a result)
        writes the task text into a private temp dir on the worker
        SubprocessBackend(workers=1).evaluate([genome], ...)     the same sandbox as locally:
            └─ a fresh sandboxed child per candidate                 a crash, hang or memory
                                                                    bomb dies in the child,
        returns Evaluation.to_dict()                                never in the Ray worker
                 ▼
    [Evaluation] in input order        durability stays with the caller (the catalog)

A local cluster (``address=None``) is started by :func:`ray.init` bound to
127.0.0.1 with no dashboard, and shut down by :meth:`RayBackend.close`;
a cluster given by ``address`` ("auto", "ray://host:10001", "host:6379") is
joined and left running. Ray is imported lazily: it is an optional extra
(``pip install project-o[ray]``).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final, Self

from project_o.errors import InvalidArgument
from project_o.evolution.backends import (
    DEFAULT_MEMORY_MB,
    DEFAULT_TIMEOUT_S,
    Evaluation,
    SubprocessBackend,
)
from project_o.evolution.genome import Genome

__all__ = ["LOCAL_HOST", "RayBackend", "start_local_cluster"]

#: a local cluster listens on loopback only: nothing outside this host may join it
LOCAL_HOST: Final = "127.0.0.1"
#: keeps a local Ray on the loopback interface, set where ray.init runs
_LOCAL_ENV: Final = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def start_local_cluster(num_cpus: int | None = None) -> None:
    """``ray.init`` a single-node cluster on 127.0.0.1, without a dashboard."""
    # Before the import: Ray reads it when its modules load, and its servers
    # (GCS, raylet, workers) inherit it from this process.
    os.environ.update(_LOCAL_ENV)
    import ray

    ray.init(num_cpus=num_cpus, include_dashboard=False, _node_ip_address=LOCAL_HOST,
             log_to_driver=False, configure_logging=False)


def _evaluate_on_worker(genome: Genome, task_name: str, task_text: str, timeout_s: float,
                        memory_mb: int) -> dict[str, Any]:
    """Body of the Ray task: one candidate in a sandboxed child on this worker."""
    with tempfile.TemporaryDirectory(prefix="project-o-ray-") as home:
        task = Path(home) / task_name
        task.write_text(task_text)
        backend = SubprocessBackend(workers=1)
        [result] = backend.evaluate([genome], task, timeout_s=timeout_s, memory_mb=memory_mb)
        return result.to_dict()


class RayBackend:
    """An :class:`~project_o.evolution.backends.EvaluationBackend` on Ray."""

    def __init__(self, address: str | None = None, *, num_cpus: int | None = None) -> None:
        try:
            import ray
        except ImportError as exc:
            raise InvalidArgument("the Ray backend needs ray: pip install 'project-o[ray]'"
                                  ) from exc
        self._ray = ray
        self._owns_cluster = False
        if not ray.is_initialized():
            self._init(address, num_cpus)
        self._remote = ray.remote(num_cpus=1, max_retries=0)(_evaluate_on_worker)

    def _init(self, address: str | None, num_cpus: int | None) -> None:
        if address is None:
            start_local_cluster(num_cpus)
            self._owns_cluster = True
        else:
            self._ray.init(address=address, log_to_driver=False, configure_logging=False)

    def evaluate(self, genomes: Sequence[Genome], task_path: Path, *,
                 timeout_s: float = DEFAULT_TIMEOUT_S,
                 memory_mb: int = DEFAULT_MEMORY_MB) -> list[Evaluation]:
        """One Ray task per genome; results in input order."""
        task = Path(task_path)
        if not task.is_file():
            raise InvalidArgument(f"expected a task file with evaluate(agent), {task} is missing")
        text = task.read_text()
        refs = [self._remote.remote(g, task.name, text, timeout_s, memory_mb) for g in genomes]
        return [Evaluation.from_dict(data) for data in self._ray.get(refs)]

    def close(self) -> None:
        """Shut down the local cluster this backend started (a joined one stays up)."""
        if self._owns_cluster and self._ray.is_initialized():
            self._ray.shutdown()
        self._owns_cluster = False

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
