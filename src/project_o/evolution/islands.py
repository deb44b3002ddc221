"""Islands: populations that evolve apart and trade their best on a ring.

::

    island 0 ──► island 1 ──► ... ──► island K-1 ──┐
       ▲                                           │   every ``interval`` generations,
       └───────────────────────────────────────────┘   after evaluation

    a population island:  its ``count`` best distinct genomes replace the
                          next island's ``count`` worst (those it lacks)
    a MAP-Elites island:  its ``count`` best elites are offered to the next
                          island's archive, which keeps them where they win a cell

``count`` is ``max(1, round(rate * population))``. Every island sends what
it had before any arrived, so the ring's order does not matter, and no
randomness is used: which genomes move is a function of the ranking.
Islands keep diversity (each drifts its own way) while the migrants spread
what works (Whitley, Rana & Heckendorn, 1999, "The island model genetic
algorithm"; OpenEvolve's ring migration).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from project_o.errors import InvalidArgument
from project_o.evolution.archive import MapElites
from project_o.evolution.genome import Genome
from project_o.evolution.task import Evaluation

__all__ = ["DEFAULT_MIGRATION_INTERVAL", "DEFAULT_MIGRATION_RATE", "Island", "Migration",
           "check_islands", "migrants", "ring_migration"]

#: generations between migrations: a few, so islands differ before they trade
DEFAULT_MIGRATION_INTERVAL: Final = 5
#: share of a population that moves: OpenEvolve's default migration rate
DEFAULT_MIGRATION_RATE: Final = 0.1


@dataclass
class Island:
    """One island: its current population and, in MAP-Elites mode, its archive."""

    population: list[Genome]
    archive: MapElites | None = None


@dataclass(frozen=True)
class Migration:
    """Genomes that moved from one island to the next."""

    generation: int
    source: int
    target: int
    genomes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """As the run's state and ``--json`` report it."""
        return {"generation": self.generation, "from": self.source, "to": self.target,
                "genomes": list(self.genomes)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Migration:
        """The inverse of :meth:`to_json`."""
        return cls(int(data["generation"]), int(data["from"]), int(data["to"]),
                   list(data["genomes"]))


def check_islands(islands: int, interval: int, rate: float) -> None:
    """Refuse a ring that cannot work, naming the option."""
    if islands < 1 or interval < 1 or not 0.0 < rate <= 1.0:
        raise InvalidArgument("need --islands >= 1, --migration-interval >= 1 and "
                              f"--migration-rate in (0, 1]; got {islands}, {interval}, {rate}")


def migrants(population: int, rate: float) -> int:
    """How many genomes an island sends."""
    return max(1, round(rate * population))


Key = Callable[[Genome], tuple[float, ...]]


def ring_migration(islands: Sequence[Island], generation: int, count: int, *,
                   genomes: Mapping[str, Genome], cache: Mapping[str, Evaluation],
                   key: Key) -> list[Migration]:
    """Move each island's best to the next one, in place; what moved.

    ``genomes`` and ``cache`` hold every genome an archive names and its
    evaluation; ``key`` ranks genomes (larger is better).
    """
    if len(islands) < 2:
        return []
    sent = [_best(island, count, genomes, key) for island in islands]
    moves = []
    for target, island in enumerate(islands):
        source = (target - 1) % len(islands)
        arrived = _receive(island, sent[source], cache, key)
        if arrived:
            moves.append(Migration(generation, source, target, [g.id for g in arrived]))
    return moves


def _best(island: Island, count: int, genomes: Mapping[str, Genome], key: Key) -> list[Genome]:
    if island.archive is not None:
        return [genomes[i] for i in island.archive.elites()[:count]]
    distinct = {g.id: g for g in island.population}.values()
    return sorted(distinct, key=lambda g: (_negate(key(g)), g.id))[:count]


def _receive(island: Island, arriving: list[Genome], cache: Mapping[str, Evaluation],
             key: Key) -> list[Genome]:
    if island.archive is not None:
        archive = island.archive
        return [g for g in arriving if g.id not in archive and archive.insert(g.id, cache[g.id])]
    present = {g.id for g in island.population}
    new = [g for g in arriving if g.id not in present]
    worst = sorted(range(len(island.population)),
                   key=lambda i: (key(island.population[i]), island.population[i].id))
    for slot, genome in zip(sorted(worst[:len(new)]), new, strict=False):
        island.population[slot] = genome
    return new


def _negate(key: tuple[float, ...]) -> tuple[float, ...]:
    return tuple(-k for k in key)
