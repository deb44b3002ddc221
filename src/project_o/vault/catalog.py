"""The catalog: what versions exist, where they came from, and how they did.

``VAULT/catalog.sqlite`` is one SQLite database (schema and migrations in
:mod:`project_o.vault.catalog_schema`)::

    Catalog.open(path) ─► connect ─► WAL journal, synchronous=FULL, foreign keys
                       ─► migrate to LATEST_VERSION (refuse a newer file)

    add_version / set_version_status          versions     (lineage, status)
    add_experiment / update_experiment        experiments  (shadow, canary, decision)
    add_evaluation / evaluations_for          evaluations  (metrics per run)
    add_feedback / feedback_for               feedback     (user scores -1..1)
    record_event / recent_events              events       (the audit trail)

Every method returns small frozen dataclasses (``*Record``), whose JSON
columns are already decoded to Python values. Every write is its own
transaction and is on disk when the method returns: ``synchronous=FULL``
in WAL mode fsyncs the log at each commit, so a ``kill -9`` (or a power
cut) right after a call loses nothing it reported.

Thread-safe: one connection, guarded by a lock (SQLite serialises writers
anyway; one connection keeps that cheap and the order obvious). Other
processes may open the same file; they wait up to :data:`BUSY_TIMEOUT_S`
for the write lock.

Errors: a caller's mistake (unknown id, score out of range, a value JSON
cannot encode) raises :class:`~project_o.errors.InvalidArgument`; SQLite
failing raises :class:`~project_o.errors.CatalogError`; use after
:meth:`Catalog.close` raises :class:`~project_o.errors.VaultClosed`.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from project_o.errors import CatalogError, InvalidArgument, VaultClosed, VersionConflict
from project_o.vault.catalog_schema import migrate

__all__ = [
    "BUSY_TIMEOUT_S",
    "Catalog",
    "EvaluationRecord",
    "EventRecord",
    "ExperimentRecord",
    "FeedbackRecord",
    "VersionRecord",
]

#: how long a write waits for another process holding the SQLite write lock;
#: commits take milliseconds, so seconds of waiting mean something is stuck
BUSY_TIMEOUT_S = 10.0

Clock = Callable[[], float]


@dataclass(frozen=True)
class VersionRecord:
    """One version of the agent's code; ``id`` is the content hash of ``source``."""

    id: str
    parents: tuple[str, ...]
    operator: str
    params: dict[str, Any]
    source: dict[str, str]
    status: str
    reason: str
    created_at: float


@dataclass(frozen=True)
class ExperimentRecord:
    """A shadow / canary / evolution experiment comparing a candidate to a baseline."""

    id: str
    kind: str
    candidate_version: str
    baseline_version: str | None
    stage: str
    status: str
    decision: str | None
    reason: str
    stats: dict[str, Any]
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class EvaluationRecord:
    """The metrics (or the failure) of one evaluation of a version."""

    id: int
    version_id: str
    experiment_id: str | None
    run_id: str | None
    metrics: dict[str, Any]
    failure: dict[str, Any] | None
    created_at: float


@dataclass(frozen=True)
class FeedbackRecord:
    """A user's score (-1 bad .. 1 good) for the answer to one request."""

    id: int
    request_id: str
    version_id: str | None
    score: float
    comment: str
    created_at: float


@dataclass(frozen=True)
class EventRecord:
    """One entry of the audit trail: what happened, to what, and why."""

    id: int
    ts: float
    kind: str
    subject: str
    reason: str
    data: Any


class Catalog:
    """The SQLite catalog of one vault. Open with :meth:`Catalog.open`."""

    def __init__(self, conn: sqlite3.Connection, path: Path, clock: Clock = time.time) -> None:
        self._conn = conn
        self.path = path
        self._clock = clock
        self._lock = threading.RLock()  # transaction(sync=False) holds it around _transaction
        self._closed = False

    @classmethod
    def open(cls, path: str | Path, *, clock: Clock = time.time) -> Catalog:
        """Open (creating and migrating if needed) the catalog at ``path``.

        Raises :class:`CatalogError` if the file is not a usable SQLite
        database or was written by a newer schema than this build knows.
        """
        path = Path(path)
        try:
            conn = sqlite3.connect(
                path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise CatalogError(f"cannot open catalog {path}: {exc}") from exc
        try:
            _configure(conn, path)
            migrate(conn, name=f"catalog {path}")
        except BaseException:
            conn.close()
            raise
        return cls(conn, path, clock)

    # -- versions -------------------------------------------------------

    def add_version(
        self,
        version_id: str,
        *,
        source: Mapping[str, str],
        parents: Sequence[str] = (),
        operator: str = "",
        params: Mapping[str, Any] | None = None,
        status: str = "candidate",
        reason: str = "",
    ) -> VersionRecord:
        """Record a version. Content-addressed, so adding an existing id is a no-op
        that returns the stored record (the first lineage recorded wins).

        Raises :class:`VersionConflict` if the id is already recorded with
        different source: an id is never reused for other code.
        """
        _require_text("version_id", version_id)
        row = (
            version_id, _json(list(parents), "parents"), operator,
            _json(dict(params or {}), "params"), _json(dict(source), "source"),
            status, reason, self._clock(),
        )
        with self._transaction(f"add version {version_id!r}") as conn:
            conn.execute(
                "INSERT INTO versions (id, parents, operator, params, source, status, reason,"
                " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                row,
            )
            stored = _version(_one(conn, "SELECT * FROM versions WHERE id = ?", version_id))
        if stored.source != dict(source):
            raise VersionConflict(
                f"version id {version_id!r} is already recorded with different source "
                f"(files {sorted(stored.source)}); ids are content hashes, so the new "
                "source was refused - derive the id from the source (content_version)"
            )
        return stored

    def get_version(self, version_id: str) -> VersionRecord | None:
        """The version with this id, or ``None``."""
        rows = self._query("SELECT * FROM versions WHERE id = ?", (version_id,))
        return _version(rows[0]) if rows else None

    def list_versions(self, *, status: str | None = None) -> list[VersionRecord]:
        """All versions (or those with ``status``), oldest first."""
        where, args = _filters(status=status)
        sql = f"SELECT * FROM versions{where} ORDER BY created_at, id"
        return [_version(row) for row in self._query(sql, args)]

    def set_version_status(self, version_id: str, status: str, reason: str = "") -> VersionRecord:
        """Change a version's status (active, retired, rejected...) and say why."""
        with self._transaction(f"set status of version {version_id!r}") as conn:
            cursor = conn.execute(
                "UPDATE versions SET status = ?, reason = ? WHERE id = ?",
                (status, reason, version_id),
            )
            _require_found(cursor, "version", version_id)
            return _version(_one(conn, "SELECT * FROM versions WHERE id = ?", version_id))

    # -- experiments ----------------------------------------------------

    def add_experiment(
        self,
        kind: str,
        candidate_version: str,
        *,
        baseline_version: str | None = None,
        stage: str = "shadow",
        status: str = "running",
        stats: Mapping[str, Any] | None = None,
        experiment_id: str | None = None,
    ) -> ExperimentRecord:
        """Start an experiment; its id is ``experiment_id`` or a fresh UUID (hex)."""
        now = self._clock()
        record = ExperimentRecord(
            id=experiment_id or uuid.uuid4().hex, kind=kind, candidate_version=candidate_version,
            baseline_version=baseline_version, stage=stage, status=status, decision=None,
            reason="", stats=dict(stats or {}), created_at=now, updated_at=now,
        )
        with self._transaction(f"add experiment {record.id!r}") as conn:
            conn.execute(
                "INSERT INTO experiments (id, kind, candidate_version, baseline_version, stage,"
                " status, decision, reason, stats, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (record.id, kind, candidate_version, baseline_version, stage, status, None, "",
                 _json(record.stats, "stats"), now, now),
            )
        return record

    def update_experiment(
        self,
        experiment_id: str,
        *,
        stage: str | None = None,
        status: str | None = None,
        decision: str | None = None,
        reason: str | None = None,
        stats: Mapping[str, Any] | None = None,
    ) -> ExperimentRecord:
        """Change the given fields (``stats`` is replaced, not merged); return the result."""
        changes: dict[str, Any] = {
            "stage": stage, "status": status, "decision": decision, "reason": reason,
            "stats": None if stats is None else _json(dict(stats), "stats"),
        }
        changes = {column: value for column, value in changes.items() if value is not None}
        changes["updated_at"] = self._clock()
        # Column names come from the fixed dict above, never from the caller.
        assignments = ", ".join(f"{column} = ?" for column in changes)
        with self._transaction(f"update experiment {experiment_id!r}") as conn:
            cursor = conn.execute(
                f"UPDATE experiments SET {assignments} WHERE id = ?",
                (*changes.values(), experiment_id),
            )
            _require_found(cursor, "experiment", experiment_id)
            return _experiment(_one(conn, "SELECT * FROM experiments WHERE id = ?", experiment_id))

    def get_experiment(self, experiment_id: str) -> ExperimentRecord | None:
        """The experiment with this id, or ``None``."""
        rows = self._query("SELECT * FROM experiments WHERE id = ?", (experiment_id,))
        return _experiment(rows[0]) if rows else None

    def list_experiments(
        self, *, status: str | None = None, kind: str | None = None
    ) -> list[ExperimentRecord]:
        """Experiments, optionally filtered by ``status`` and ``kind``, oldest first."""
        where, args = _filters(status=status, kind=kind)
        sql = f"SELECT * FROM experiments{where} ORDER BY created_at, id"
        return [_experiment(row) for row in self._query(sql, args)]

    # -- evaluations ----------------------------------------------------

    def add_evaluation(
        self,
        version_id: str,
        metrics: Mapping[str, Any],
        *,
        experiment_id: str | None = None,
        run_id: str | None = None,
        failure: Mapping[str, Any] | None = None,
    ) -> EvaluationRecord:
        """Record one evaluation of ``version_id`` (``failure`` set when it crashed)."""
        now = self._clock()
        failure_json = None if failure is None else _json(dict(failure), "failure")
        with self._transaction(f"add evaluation of version {version_id!r}") as conn:
            cursor = conn.execute(
                "INSERT INTO evaluations (version_id, experiment_id, run_id, metrics, failure,"
                " created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (version_id, experiment_id, run_id, _json(dict(metrics), "metrics"),
                 failure_json, now),
            )
        return EvaluationRecord(
            id=_rowid(cursor), version_id=version_id, experiment_id=experiment_id, run_id=run_id,
            metrics=dict(metrics), failure=None if failure is None else dict(failure),
            created_at=now,
        )

    def evaluations_for(
        self, version_id: str, *, experiment_id: str | None = None
    ) -> list[EvaluationRecord]:
        """Evaluations of ``version_id`` (within one experiment if given), oldest first."""
        where, args = _filters(version_id=version_id, experiment_id=experiment_id)
        rows = self._query(f"SELECT * FROM evaluations{where} ORDER BY id", args)
        return [_evaluation(row) for row in rows]

    # -- feedback -------------------------------------------------------

    def add_feedback(
        self,
        request_id: str,
        score: float,
        *,
        version_id: str | None = None,
        comment: str = "",
    ) -> FeedbackRecord:
        """Record a user's score in -1..1 for a request (the database enforces the range)."""
        if isinstance(score, bool) or not isinstance(score, int | float):
            raise InvalidArgument(f"feedback score must be a number in -1..1, got {score!r}")
        now = self._clock()
        with self._transaction(f"add feedback with score {score!r} (must be in -1..1)") as conn:
            cursor = conn.execute(
                "INSERT INTO feedback (request_id, version_id, score, comment, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (request_id, version_id, float(score), comment, now),
            )
        return FeedbackRecord(
            id=_rowid(cursor), request_id=request_id, version_id=version_id, score=float(score),
            comment=comment, created_at=now,
        )

    def feedback_for(self, version_id: str) -> list[FeedbackRecord]:
        """Feedback on answers given by ``version_id``, oldest first."""
        rows = self._query("SELECT * FROM feedback WHERE version_id = ? ORDER BY id", (version_id,))
        return [_feedback(row) for row in rows]

    # -- events ---------------------------------------------------------

    def record_event(self, kind: str, subject: str = "", reason: str = "", data: Any = None) -> int:
        """Append an event to the audit trail; return its id (ids only grow)."""
        _require_text("kind", kind)
        with self._transaction(f"record event {kind!r}") as conn:
            cursor = conn.execute(
                "INSERT INTO events (ts, kind, subject, reason, data) VALUES (?, ?, ?, ?, ?)",
                (self._clock(), kind, subject, reason, _json(data, "data")),
            )
        return _rowid(cursor)

    def recent_events(self, limit: int = 100, *, kind: str | None = None) -> list[EventRecord]:
        """The newest ``limit`` events (of ``kind`` if given), newest first."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise InvalidArgument(f"limit must be an int >= 0, got {limit!r}")
        where, args = _filters(kind=kind)
        rows = self._query(f"SELECT * FROM events{where} ORDER BY id DESC LIMIT ?", (*args, limit))
        return [_event(row) for row in rows]

    # -- lifecycle ------------------------------------------------------

    def close(self) -> None:
        """Close the connection; idempotent. Later calls raise ``VaultClosed``."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- plumbing -------------------------------------------------------

    @contextmanager
    def transaction(self, what: str, *, sync: bool = True) -> Iterator[sqlite3.Connection]:
        """One write transaction on the catalog's own connection, for callers that
        write many rows at once (an evolution run's generation); ``what`` names
        it in errors.

        ``sync=False`` commits without an fsync: the rows survive a crash of
        this process (they are in the log file) but not a power cut until the
        next synced commit, whose fsync of the same log covers them.
        """
        if sync:
            with self._transaction(what) as conn:
                yield conn
            return
        with self._lock:
            self._check_open()
            self._conn.execute("PRAGMA synchronous = NORMAL")
            try:
                with self._transaction(what) as conn:
                    yield conn
            finally:
                self._conn.execute("PRAGMA synchronous = FULL")

    def query(self, sql: str, args: Sequence[Any] = ()) -> list[sqlite3.Row]:
        """Rows of a read-only SQL query, SQLite errors translated."""
        return self._query(sql, args)

    @contextmanager
    def _transaction(self, what: str) -> Iterator[sqlite3.Connection]:
        """One write transaction under the lock, with SQLite errors translated."""
        with self._lock:
            self._check_open()
            try:
                # IMMEDIATE takes the write lock now, so a read-then-write inside
                # never fails half-way with SQLITE_BUSY.
                self._conn.execute("BEGIN IMMEDIATE")
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException as exc:
                # SQLite rolls back by itself after some errors (disk full, I/O);
                # a second ROLLBACK would fail and hide the real error.
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.IntegrityError):
                    raise _integrity_error(what, exc) from exc
                if isinstance(exc, sqlite3.Error):
                    raise CatalogError(f"catalog {self.path}: could not {what}: {exc}") from exc
                raise

    def _query(self, sql: str, args: Sequence[Any]) -> list[sqlite3.Row]:
        with self._lock:
            self._check_open()
            try:
                return self._conn.execute(sql, tuple(args)).fetchall()
            except sqlite3.Error as exc:
                raise CatalogError(f"catalog {self.path}: query failed: {exc}") from exc

    def _check_open(self) -> None:
        if self._closed:
            raise VaultClosed(f"catalog {self.path} is closed; open it again with Catalog.open()")


# -- helpers ------------------------------------------------------------


def _configure(conn: sqlite3.Connection, path: Path) -> None:
    conn.row_factory = sqlite3.Row
    try:
        # WAL: readers never block the writer, and a commit is one sequential
        # append + fsync. FULL: that fsync happens at every commit, which is
        # what makes "returned" mean "durable". Foreign keys are off by default.
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
    except sqlite3.Error as exc:
        raise CatalogError(
            f"cannot open catalog {path}: {exc}; is it an SQLite database?"
        ) from exc
    if str(mode).lower() != "wal":
        raise CatalogError(
            f"catalog {path}: SQLite refused WAL journaling (got {mode!r}); put the vault on "
            "a local file system"
        )


def _json(value: Any, field: str) -> str:
    try:
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"{field} must be JSON-serialisable: {exc}") from exc


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _require_text(name: str, value: object) -> None:
    if not isinstance(value, str) or not value:
        raise InvalidArgument(f"{name} must be a non-empty string, got {value!r}")


def _require_found(cursor: sqlite3.Cursor, what: str, key: str) -> None:
    if cursor.rowcount == 0:
        raise InvalidArgument(f"no {what} with id {key!r} in the catalog; add it first")


def _one(conn: sqlite3.Connection, sql: str, key: str) -> sqlite3.Row:
    row: sqlite3.Row = conn.execute(sql, (key,)).fetchone()
    return row


def _rowid(cursor: sqlite3.Cursor) -> int:
    rowid = cursor.lastrowid
    assert rowid is not None  # an INSERT into a rowid table always sets it
    return rowid


def _filters(**equal: Any) -> tuple[str, tuple[Any, ...]]:
    """``WHERE a = ? AND b = ?`` for the keyword arguments that are not None."""
    # Column names are the keyword names written in this module, never caller data.
    given = {column: value for column, value in equal.items() if value is not None}
    if not given:
        return "", ()
    return " WHERE " + " AND ".join(f"{c} = ?" for c in given), tuple(given.values())


def _integrity_error(what: str, exc: sqlite3.IntegrityError) -> InvalidArgument:
    message = str(exc)
    if "FOREIGN KEY" in message:
        hint = "it refers to a version or experiment the catalog does not have; add that first"
    elif "UNIQUE" in message or "PRIMARY KEY" in message:
        hint = "that id already exists"
    else:
        hint = "a value is out of range or missing"
    return InvalidArgument(f"cannot {what}: {hint} ({message})")


def _version(row: sqlite3.Row) -> VersionRecord:
    return VersionRecord(
        id=row["id"], parents=tuple(_loads(row["parents"])), operator=row["operator"],
        params=_loads(row["params"]), source=_loads(row["source"]), status=row["status"],
        reason=row["reason"], created_at=row["created_at"],
    )


def _experiment(row: sqlite3.Row) -> ExperimentRecord:
    return ExperimentRecord(
        id=row["id"], kind=row["kind"], candidate_version=row["candidate_version"],
        baseline_version=row["baseline_version"], stage=row["stage"], status=row["status"],
        decision=row["decision"], reason=row["reason"], stats=_loads(row["stats"]),
        created_at=row["created_at"], updated_at=row["updated_at"],
    )


def _evaluation(row: sqlite3.Row) -> EvaluationRecord:
    return EvaluationRecord(
        id=row["id"], version_id=row["version_id"], experiment_id=row["experiment_id"],
        run_id=row["run_id"], metrics=_loads(row["metrics"]), failure=_loads(row["failure"]),
        created_at=row["created_at"],
    )


def _feedback(row: sqlite3.Row) -> FeedbackRecord:
    return FeedbackRecord(
        id=row["id"], request_id=row["request_id"], version_id=row["version_id"],
        score=row["score"], comment=row["comment"], created_at=row["created_at"],
    )


def _event(row: sqlite3.Row) -> EventRecord:
    return EventRecord(
        id=row["id"], ts=row["ts"], kind=row["kind"], subject=row["subject"],
        reason=row["reason"], data=_loads(row["data"]),
    )
