"""The catalog's schema, built by numbered migrations.

::

    versions ◄──────────── experiments.candidate_version / baseline_version
       ▲  ▲                      ▲
       │  └── evaluations.version_id, evaluations.experiment_id (nullable)
       └───── feedback.version_id (nullable)
    events                         append-only log (experiment decisions, rollbacks…)
    llm_calls                      one row per LLM call of an evolution run (tokens, cost)

JSON columns hold text written by ``json.dumps``. Times are unix seconds
(REAL).

How migrations work: :data:`MIGRATIONS` is an ordered list of
``(version, statements)``. :func:`migrate` applies each one newer than the
database's ``PRAGMA user_version`` in its own ``BEGIN IMMEDIATE``
transaction, setting ``user_version`` in that same transaction (it lives in
the database header, so it commits or rolls back with the DDL). A crash
mid-migration leaves the previous version intact; two processes opening a
new catalog at once serialise on the write lock and the second finds the
work done. A database newer than :data:`LATEST_VERSION` is refused, never
guessed at.

To change the schema, append a migration; never edit a released one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from project_o.errors import CatalogError

__all__ = ["LATEST_VERSION", "MIGRATIONS", "Migration", "migrate", "schema_version"]


@dataclass(frozen=True)
class Migration:
    """One step of the schema: the statements that take version - 1 to ``version``."""

    version: int
    description: str
    statements: tuple[str, ...]


_FOUNDATION = (
    """CREATE TABLE versions (
        id          TEXT PRIMARY KEY,            -- content hash of the source
        parents     TEXT NOT NULL DEFAULT '[]',  -- JSON list of version ids
        operator    TEXT NOT NULL DEFAULT '',    -- what made it: seed, mut_*, cx_*, llm...
        params      TEXT NOT NULL DEFAULT '{}',  -- JSON: the operator's parameters
        source      TEXT NOT NULL DEFAULT '{}',  -- JSON: {file name: text}
        status      TEXT NOT NULL,
        reason      TEXT NOT NULL DEFAULT '',
        created_at  REAL NOT NULL
    )""",
    "CREATE INDEX versions_by_status ON versions (status, created_at)",
    """CREATE TABLE experiments (
        id                 TEXT PRIMARY KEY,
        kind               TEXT NOT NULL,
        candidate_version  TEXT NOT NULL REFERENCES versions (id),
        baseline_version   TEXT REFERENCES versions (id),
        stage              TEXT NOT NULL,
        status             TEXT NOT NULL,
        decision           TEXT,
        reason             TEXT NOT NULL DEFAULT '',
        stats              TEXT NOT NULL DEFAULT '{}',   -- JSON
        created_at         REAL NOT NULL,
        updated_at         REAL NOT NULL
    )""",
    "CREATE INDEX experiments_by_status ON experiments (status, created_at)",
    """CREATE TABLE evaluations (
        id             INTEGER PRIMARY KEY AUTOINCREMENT,
        version_id     TEXT NOT NULL REFERENCES versions (id),
        experiment_id  TEXT REFERENCES experiments (id),
        run_id         TEXT,
        metrics        TEXT NOT NULL DEFAULT '{}',   -- JSON
        failure        TEXT,                         -- JSON, NULL when it ran fine
        created_at     REAL NOT NULL
    )""",
    "CREATE INDEX evaluations_by_version ON evaluations (version_id, id)",
    "CREATE INDEX evaluations_by_experiment ON evaluations (experiment_id, id)",
    """CREATE TABLE feedback (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        request_id  TEXT NOT NULL,
        version_id  TEXT REFERENCES versions (id),
        -- NOT NULL also catches NaN, which SQLite stores as NULL
        score       REAL NOT NULL CHECK (score BETWEEN -1.0 AND 1.0),
        comment     TEXT NOT NULL DEFAULT '',
        created_at  REAL NOT NULL
    )""",
    "CREATE INDEX feedback_by_version ON feedback (version_id, id)",
    "CREATE INDEX feedback_by_request ON feedback (request_id)",
    """CREATE TABLE events (
        id       INTEGER PRIMARY KEY AUTOINCREMENT,
        ts       REAL NOT NULL,
        kind     TEXT NOT NULL,
        subject  TEXT NOT NULL DEFAULT '',
        reason   TEXT NOT NULL DEFAULT '',
        data     TEXT NOT NULL DEFAULT 'null'   -- JSON
    )""",
    "CREATE INDEX events_by_kind ON events (kind, id)",
)

_LLM_CALLS = (
    """CREATE TABLE llm_calls (
        id                 INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id             TEXT NOT NULL,
        generation         INTEGER NOT NULL,        -- the generation being bred
        model              TEXT NOT NULL,
        parent_id          TEXT NOT NULL DEFAULT '',
        version_id         TEXT,                    -- the child it gave; NULL: none
        outcome            TEXT NOT NULL,           -- "child", or why there was none
        prompt_tokens      INTEGER NOT NULL,
        completion_tokens  INTEGER NOT NULL,
        cost_usd           REAL NOT NULL,
        created_at         REAL NOT NULL
    )""",
    "CREATE INDEX llm_calls_by_run ON llm_calls (run_id, id)",
)

#: every schema step, oldest first; append, never edit
MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "foundation: versions, experiments, evaluations, feedback, events", _FOUNDATION),
    Migration(2, "llm_calls: tokens and cost of every LLM call of an evolution run", _LLM_CALLS),
)

#: the schema version this build writes and the newest it can open
LATEST_VERSION = MIGRATIONS[-1].version


def schema_version(conn: sqlite3.Connection) -> int:
    """The schema version recorded in the database (0 for a new file)."""
    version: int = conn.execute("PRAGMA user_version").fetchone()[0]
    return version


def migrate(
    conn: sqlite3.Connection,
    migrations: Sequence[Migration] = MIGRATIONS,
    *,
    name: str = "catalog",
) -> int:
    """Bring ``conn``'s schema up to the newest of ``migrations``; return that version.

    ``conn`` must be in autocommit mode (``isolation_level=None``) so the
    transactions here are the only ones. Raises :class:`CatalogError` if
    the database is newer than the code or a migration fails (that
    migration is rolled back; earlier ones stay).
    """
    _check_ordered(migrations)
    latest = migrations[-1].version if migrations else 0
    _refuse_newer(schema_version(conn), latest, name)
    for migration in migrations:
        _apply(conn, migration, latest, name)
    return schema_version(conn)


def _check_ordered(migrations: Sequence[Migration]) -> None:
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise CatalogError(f"migrations must be numbered 1, 2, 3... without gaps; got {versions}")


def _refuse_newer(current: int, latest: int, name: str) -> None:
    if current > latest:
        raise CatalogError(
            f"{name} has schema version {current}, but this build knows versions up to "
            f"{latest}; a newer Project O wrote it - upgrade, or open it with that build"
        )


def _apply(conn: sqlite3.Connection, migration: Migration, latest: int, name: str) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        # Re-read under the write lock: another process may have migrated meanwhile.
        current = schema_version(conn)
        _refuse_newer(current, latest, name)
        if current < migration.version:
            for statement in migration.statements:
                conn.execute(statement)
            # PRAGMA takes no parameters; the version is an int from our own table.
            conn.execute(f"PRAGMA user_version = {int(migration.version)}")
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        _rollback(conn)
        raise CatalogError(
            f"{name}: migration {migration.version} ({migration.description}) failed: {exc}; "
            f"the schema is left at version {schema_version(conn)}"
        ) from exc
    except BaseException:
        _rollback(conn)
        raise


def _rollback(conn: sqlite3.Connection) -> None:
    # Some errors (disk full, I/O) make SQLite roll back by itself; a second
    # ROLLBACK would then fail and hide the real error.
    if conn.in_transaction:
        conn.execute("ROLLBACK")
