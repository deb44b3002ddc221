"""What the genetic algorithm lets a plug-in keep across generations and resumes.

::

    GeneticAlgorithm(..., extensions=[ext])
      run start / resume ─► ext.begin(RunContext(run_id, store, evaluation))
      generation g settled ─► state.extras[ext.name] = ext.snapshot(g)    (same commit)
      resume from g        ─► ext.restore(g, state.extras[ext.name])
      before generation g+1 ─► ext.stop_reason(): text ─► the run ends after g, "stopped"

An extension's snapshot is committed in the same transaction as the
generation it belongs to, so a resumed run continues from exactly the
state an uninterrupted run had at that point (the LLM ensemble keeps its
bandit, usage counters and open proposals this way).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from project_o.evolution.task import Evaluation

if TYPE_CHECKING:
    from project_o.evolution.run_store import RunStore

__all__ = ["RunContext", "RunExtension"]


@dataclass(frozen=True)
class RunContext:
    """What an extension may use of the run it joins."""

    run_id: str
    store: RunStore | None
    #: the evaluation of a genome id, once it has one (the parent's artifacts, a child's score)
    evaluation: Callable[[str], Evaluation | None]


class RunExtension(Protocol):
    """A plug-in with state that lives and resumes with the run."""

    @property
    def name(self) -> str:
        """The key of its snapshot in a generation's state."""
        ...

    def begin(self, context: RunContext) -> None:
        """The run starts or resumes (before any proposal)."""
        ...

    def snapshot(self, generation: int) -> dict[str, Any]:
        """JSON-able state at the end of ``generation`` (committed with it)."""
        ...

    def restore(self, generation: int, state: Mapping[str, Any]) -> None:
        """Continue from the :meth:`snapshot` taken at the end of ``generation``."""
        ...

    def stop_reason(self) -> str | None:
        """Why no further generation should start (a budget spent), or ``None``."""
        ...
