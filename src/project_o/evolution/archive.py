"""MAP-Elites: the best candidate in each cell of a grid over features the task measures.

::

    evaluation metrics ─► (f1, f2, ...)  features the task returns, e.g. "length", "calls"
                       ─► cell = per feature: bin of (value - low) / (high - low) in ``bins``
                       ─► the cell keeps whichever is better: its elite, or this candidate

    parents ◄── sample(rng): a uniformly chosen occupied cell's elite

The grid's range per feature is the range seen so far (as OpenEvolve
scales its features): when a value falls outside it, the range widens and
every elite is placed again, the better one keeping a cell that two now
share. "Better" is a total order (merit: the cascade stage reached, then
fitness; then the smaller id), so the
archive is a function of the candidates inserted and their order, and
:meth:`MapElites.state` / :meth:`MapElites.load` carry it across a
restart exactly. Failed candidates and ones missing a feature are not
placed. (Mouret & Clune, 2015, "Illuminating search spaces by mapping
elites", arXiv:1504.04909.)
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from typing import Any, Final

from project_o.errors import InvalidArgument
from project_o.evolution.task import Evaluation

__all__ = ["ARCHIVE_KINDS", "MAX_CELLS", "MapElites"]

#: the archives ``--archive`` knows
ARCHIVE_KINDS: Final = ("map-elites",)
#: a grid larger than this is mostly empty cells for any budget this runs
MAX_CELLS: Final = 1_000_000

Cell = tuple[int, ...]
#: (cascade stage reached, fitness): :attr:`Evaluation.merit`
Merit = tuple[float, float]


class MapElites:
    """A grid of ``bins`` per feature over ``features``, one elite per cell."""

    def __init__(self, features: Sequence[str], bins: int) -> None:
        if not features or len(set(features)) != len(features):
            raise InvalidArgument(f"MAP-Elites needs distinct feature names, got {features!r}")
        if bins < 1 or bins ** len(features) > MAX_CELLS:
            raise InvalidArgument(f"need bins >= 1 and at most {MAX_CELLS} cells, got {bins} "
                                  f"bins over {len(features)} features")
        self.features, self.bins = tuple(features), bins
        self._bounds: list[list[float]] = []  # per feature [low, high]; empty until the first
        self._members: dict[str, tuple[Merit, tuple[float, ...]]] = {}  # id -> merit, values
        self._cells: dict[Cell, str] = {}

    def __len__(self) -> int:
        """Occupied cells."""
        return len(self._cells)

    def __contains__(self, genome_id: object) -> bool:
        """Whether ``genome_id`` holds a cell."""
        return genome_id in self._members

    def insert(self, genome_id: str, evaluation: Evaluation) -> bool:
        """Place a candidate; whether it now holds a cell."""
        values = self._values(evaluation)
        if values is None or genome_id in self._members:
            return genome_id in self._members
        if self._widen(values):
            self._rebuild()
        return self._place(genome_id, evaluation.merit, values)

    def sample(self, rng: random.Random) -> str:
        """A parent: the elite of a uniformly chosen occupied cell."""
        if not self._cells:
            raise InvalidArgument("the archive is empty: no candidate has the features "
                                  f"{list(self.features)} in its metrics")
        return self._cells[sorted(self._cells)[rng.randrange(len(self._cells))]]

    def elites(self) -> list[str]:
        """The ids holding cells, best first."""
        return sorted(self._cells.values(),
                      key=lambda i: (-self._members[i][0][0], -self._members[i][0][1], i))

    def cells(self) -> dict[str, str]:
        """``{"b1,b2": elite id}``, for reports."""
        return {",".join(map(str, cell)): gid for cell, gid in sorted(self._cells.items())}

    # -- placing --------------------------------------------------------

    def _values(self, evaluation: Evaluation) -> tuple[float, ...] | None:
        if not evaluation.ok:
            return None
        values = [evaluation.metrics.get(name) for name in self.features]
        if not all(isinstance(v, int | float) and math.isfinite(v) for v in values):
            return None
        return tuple(float(v) for v in values)  # type: ignore[arg-type]

    def _widen(self, values: tuple[float, ...]) -> bool:
        if not self._bounds:
            self._bounds = [[v, v] for v in values]
            return False
        widened = False
        for bound, value in zip(self._bounds, values, strict=True):
            if value < bound[0] or value > bound[1]:
                bound[0], bound[1] = min(bound[0], value), max(bound[1], value)
                widened = True
        return widened

    def _rebuild(self) -> None:
        members, self._members, self._cells = self._members, {}, {}
        for genome_id, (merit, values) in sorted(members.items()):
            self._place(genome_id, merit, values)

    def _place(self, genome_id: str, merit: Merit, values: tuple[float, ...]) -> bool:
        cell = self._cell(values)
        holder = self._cells.get(cell)
        if holder is not None and (self._members[holder][0], genome_id) >= (merit, holder):
            return False
        if holder is not None:
            del self._members[holder]
        self._cells[cell] = genome_id
        self._members[genome_id] = (merit, values)
        return True

    def _cell(self, values: tuple[float, ...]) -> Cell:
        return tuple(self._bin(value, low, high)
                     for value, (low, high) in zip(values, self._bounds, strict=True))

    def _bin(self, value: float, low: float, high: float) -> int:
        if high <= low:
            return 0
        return min(self.bins - 1, int((value - low) / (high - low) * self.bins))

    # -- state ----------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """JSON-able state for :meth:`load`."""
        return {"features": list(self.features), "bins": self.bins, "bounds": self._bounds,
                "members": {gid: [list(merit), list(values)]
                            for gid, (merit, values) in sorted(self._members.items())}}

    @classmethod
    def load(cls, state: Mapping[str, Any]) -> MapElites:
        """Rebuild the archive :meth:`state` described."""
        try:
            archive = cls(state["features"], int(state["bins"]))
            archive._bounds = [[float(low), float(high)] for low, high in state["bounds"]]
            for genome_id, ((stage, fitness), values) in state["members"].items():
                merit = (float(stage), float(fitness))
                archive._members[genome_id] = (merit, tuple(map(float, values)))
                archive._cells[archive._cell(archive._members[genome_id][1])] = genome_id
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidArgument(f"not a MapElites state ({exc!r}): {state!r:.200}") from exc
        return archive
