"""Durable state of an evolution run, in the vault's catalog.

::

    RUN_DIR/VAULT/catalog.sqlite          (the catalog's schema; WAL, synchronous=FULL)
      versions      every candidate: sources, params, parents, operator   (content-addressed)
      evaluations   one row per evaluated candidate: metrics, failure, run_id
      events        "evolution_run"         {run id, config, seed id}         once per run
                    "evolution_generation"  {generation, population ids, rng state,
                                             best id, history, islands + archives,
                                             bandit, counters, migrations}     once per generation
                    "evolution_duplicate"   {generation, version, twin, similarity}
                                            a candidate not evaluated: its twin was (novelty)

    evaluator batch done ─► record(genomes, evaluations)        one transaction, no fsync
    generation done      ─► commit_generation(state, duplicates) one transaction + fsync
    --resume             ─► generations(run_id) + evaluations(run_id): every committed
                            state and every evaluation, so nothing that finished is
                            evaluated again

What a method reported survives ``kill -9`` of the whole run: each
transaction is in the SQLite log when the method returns. A generation's
commit also fsyncs that log, which makes the batches recorded before it
durable against a power cut too; a batch is not fsynced on its own (after
a power cut, resume evaluates the unfinished generation's batches again). The catalog's own methods
commit one row per transaction; a generation of hundreds of candidates
goes through this module's connection instead (same file, same settings),
so it costs one fsync, not hundreds.
"""

from __future__ import annotations

import json
import random
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from project_o.errors import InvalidArgument
from project_o.evolution.genome import Genome
from project_o.evolution.novelty import Twin
from project_o.evolution.task import Evaluation
from project_o.vault.catalog import Catalog

__all__ = [
    "CATALOG_FILE",
    "DUPLICATE_EVENT",
    "GENERATION_EVENT",
    "RUN_EVENT",
    "GenerationState",
    "RunStore",
    "rng_from_state",
    "rng_state",
]

#: where the catalog lives under a run directory (a vault's layout: docs/design.md, "Vault")
CATALOG_FILE: Final = Path("VAULT") / "catalog.sqlite"
RUN_EVENT: Final = "evolution_run"
GENERATION_EVENT: Final = "evolution_generation"
DUPLICATE_EVENT: Final = "evolution_duplicate"


def rng_state(rng: random.Random) -> list[Any]:
    """``rng.getstate()`` as JSON-able data."""
    version, internal, gauss_next = rng.getstate()
    return [version, list(internal), gauss_next]


def rng_from_state(state: Sequence[Any]) -> random.Random:
    """A ``random.Random`` continuing exactly where :func:`rng_state` was taken."""
    rng = random.Random()
    rng.setstate((state[0], tuple(state[1]), state[2]))
    return rng


@dataclass(frozen=True)
class GenerationState:
    """Everything needed to continue after generation ``generation``."""

    generation: int
    population: list[str]
    rng: list[Any]
    best: str
    history: list[dict[str, Any]] = field(default_factory=list)
    #: per island: {"population": ids, "archive": MapElites state or None}
    islands: list[dict[str, Any]] = field(default_factory=list)
    #: the operator bandit's state, when the run uses one
    bandit: dict[str, Any] | None = None
    #: totals over the run (evaluated, duplicates, near_duplicates, migrants)
    counters: dict[str, int] = field(default_factory=dict)
    #: every migration so far ({"generation", "from", "to", "genomes"})
    migrations: list[dict[str, Any]] = field(default_factory=list)
    #: each run extension's snapshot, by name (see :mod:`.extensions`)
    extras: dict[str, Any] = field(default_factory=dict)


class RunStore:
    """Runs, candidates and generation states under ``run_dir``."""

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / CATALOG_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.catalog = Catalog.open(self.path)  # creates and migrates the schema

    def close(self) -> None:
        """Close the catalog."""
        self.catalog.close()

    # -- writing --------------------------------------------------------

    def start_run(self, run_id: str, config: dict[str, Any], seed: Genome) -> None:
        """Record a new run and its seed genome."""
        with self.catalog.transaction("start the run") as conn:
            _insert_version(conn, seed)
            _insert_event(conn, RUN_EVENT, run_id, {"config": config, "seed": seed.id})

    def record(self, run_id: str, genomes: Sequence[Genome],
               evaluations: Sequence[Evaluation]) -> None:
        """Record candidates and their evaluations, in one transaction."""
        with self.catalog.transaction(f"record {len(evaluations)} evaluations",
                                      sync=False) as conn:
            _insert_versions(conn, genomes)
            now = time.time()
            conn.executemany(
                "INSERT INTO evaluations (version_id, run_id, metrics, failure, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                [(e.genome_id, run_id, _json(e.metrics),
                  None if e.failure is None else _json(e.failure), now) for e in evaluations])

    def commit_generation(self, run_id: str, state: GenerationState,
                          duplicates: Sequence[tuple[Genome, Twin]] = ()) -> None:
        """Record that generation ``state.generation`` is complete (one transaction).

        ``duplicates`` are the candidates novelty kept from evaluation, each
        with its twin: recorded here, with the generation, so exactly once.
        """
        with self.catalog.transaction(f"commit generation {state.generation}") as conn:
            for genome, twin in duplicates:
                _insert_version(conn, genome)
                _insert_event(conn, DUPLICATE_EVENT, run_id, {
                    "generation": state.generation, "version": genome.id,
                    "twin": twin.genome_id, "similarity": twin.similarity})
            _insert_event(conn, GENERATION_EVENT, run_id, state.__dict__)

    # -- reading --------------------------------------------------------

    def latest_run(self) -> tuple[str, dict[str, Any]] | None:
        """``(run id, {"config", "seed"})`` of the newest run here, or ``None``."""
        rows = self.catalog.query("SELECT subject, data FROM events WHERE kind = ?"
                                  " ORDER BY id DESC LIMIT 1", (RUN_EVENT,))
        row = rows[0] if rows else None
        return None if row is None else (row[0], json.loads(row[1]))

    def last_generation(self, run_id: str) -> GenerationState | None:
        """The newest committed generation of ``run_id``, or ``None``."""
        rows = self.catalog.query("SELECT data FROM events WHERE kind = ? AND subject = ?"
                                  " ORDER BY id DESC LIMIT 1", (GENERATION_EVENT, run_id))
        row = rows[0] if rows else None
        return None if row is None else GenerationState(**json.loads(row[0]))

    def generations(self, run_id: str) -> list[GenerationState]:
        """Every committed generation of ``run_id``, oldest first."""
        rows = self.catalog.query("SELECT data FROM events WHERE kind = ? AND subject = ?"
                                  " ORDER BY id", (GENERATION_EVENT, run_id))
        return [GenerationState(**json.loads(row[0])) for row in rows]

    def duplicates(self, run_id: str) -> list[dict[str, Any]]:
        """The candidates novelty skipped: ``{"generation", "version", "twin", "similarity"}``."""
        rows = self.catalog.query("SELECT data FROM events WHERE kind = ? AND subject = ?"
                                  " ORDER BY id", (DUPLICATE_EVENT, run_id))
        return [json.loads(row[0]) for row in rows]

    def evaluations(self, run_id: str) -> dict[str, Evaluation]:
        """Every evaluation recorded for ``run_id``, by genome id (the first one wins)."""
        rows = self.catalog.query("SELECT version_id, metrics, failure FROM evaluations"
                                  " WHERE run_id = ? ORDER BY id", (run_id,))
        found: dict[str, Evaluation] = {}
        for version_id, metrics, failure in rows:
            found.setdefault(version_id, Evaluation(
                version_id, json.loads(metrics), None if failure is None else json.loads(failure)))
        return found

    def genome(self, genome_id: str) -> Genome:
        """The stored genome ``genome_id`` (its content re-checked against the id)."""
        record = self.catalog.get_version(genome_id)
        if record is None:
            raise InvalidArgument(f"version {genome_id!r} is not in {self.path}; the run "
                                  "directory is incomplete or belongs to another run")
        return Genome.from_record(record)


def _insert_version(conn: sqlite3.Connection, genome: Genome) -> None:
    _insert_versions(conn, [genome])


def _insert_versions(conn: sqlite3.Connection, genomes: Sequence[Genome]) -> None:
    now = time.time()
    conn.executemany(
        "INSERT INTO versions (id, parents, operator, params, source, status, reason,"
        " created_at) VALUES (?, ?, ?, ?, ?, 'candidate', '', ?) ON CONFLICT (id) DO NOTHING",
        [(*genome.record_row(), now) for genome in genomes])


def _insert_event(conn: sqlite3.Connection, kind: str, subject: str, data: Any) -> None:
    conn.execute("INSERT INTO events (ts, kind, subject, reason, data) VALUES (?, ?, ?, '', ?)",
                 (time.time(), kind, subject, _json(data)))


#: built once: json.dumps with options builds an encoder per call, and every evaluation
#: recorded is encoded (its metrics, its failure)
_ENCODER: Final = json.JSONEncoder(separators=(",", ":"), sort_keys=True)


def _json(value: Any) -> str:
    return _ENCODER.encode(value)
