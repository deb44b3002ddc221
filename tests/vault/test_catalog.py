"""The SQLite catalog: migrations, typed records, constraints, threads."""

from __future__ import annotations

import itertools
import math
import sqlite3
import threading
from pathlib import Path

import pytest

from project_o.errors import CatalogError, InvalidArgument, VaultClosed, VersionConflict
from project_o.vault.catalog import Catalog, EventRecord, ExperimentRecord, VersionRecord
from project_o.vault.catalog_schema import LATEST_VERSION, MIGRATIONS, Migration, migrate

TABLES = {"versions", "experiments", "evaluations", "feedback", "events"}


class FakeClock:
    """1000.0, 1001.0, 1002.0... so every record's time is predictable."""

    def __init__(self) -> None:
        self._ticks = itertools.count(1000)

    def __call__(self) -> float:
        return float(next(self._ticks))


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "catalog.sqlite"


@pytest.fixture
def catalog(path: Path) -> Catalog:
    with Catalog.open(path, clock=FakeClock()) as catalog:
        yield catalog  # type: ignore[misc]


def _raw(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


def _seed(catalog: Catalog, version_id: str = "v1") -> VersionRecord:
    return catalog.add_version(version_id, source={"agent.py": "print('hi')\n"})


# -- opening and migrations ----------------------------------------------


def test_open_creates_every_table_in_wal_mode(catalog: Catalog, path: Path) -> None:
    raw = _raw(path)
    tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert TABLES <= tables
    assert raw.execute("PRAGMA user_version").fetchone()[0] == LATEST_VERSION
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert catalog._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert catalog._conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1


def test_reopening_is_idempotent_and_keeps_data(path: Path) -> None:
    with Catalog.open(path) as catalog:
        _seed(catalog)
        event = catalog.record_event("boot", "supervisor", "started")
    for _ in range(2):
        with Catalog.open(path) as catalog:
            assert catalog.get_version("v1") is not None
            assert [e.id for e in catalog.recent_events()] == [event]
    raw = _raw(path)
    assert raw.execute("PRAGMA user_version").fetchone()[0] == LATEST_VERSION
    assert migrate(raw) == LATEST_VERSION


def test_a_newer_schema_is_refused(path: Path) -> None:
    Catalog.open(path).close()
    _raw(path).execute(f"PRAGMA user_version = {LATEST_VERSION + 1}")
    with pytest.raises(CatalogError, match=f"schema version {LATEST_VERSION + 1}.*upgrade"):
        Catalog.open(path)


def test_a_failing_migration_is_rolled_back_whole(path: Path) -> None:
    Catalog.open(path).close()
    broken = Migration(LATEST_VERSION + 1, "broken", ("CREATE TABLE half (x)", "NOT SQL"))
    raw = _raw(path)
    with pytest.raises(CatalogError, match="broken.*left at version"):
        migrate(raw, (*MIGRATIONS, broken))
    assert raw.execute("PRAGMA user_version").fetchone()[0] == LATEST_VERSION
    assert raw.execute("SELECT name FROM sqlite_master WHERE name = 'half'").fetchone() is None


def test_a_new_migration_is_applied_on_top(path: Path) -> None:
    Catalog.open(path).close()
    extra = Migration(LATEST_VERSION + 1, "extra column", ("ALTER TABLE events ADD COLUMN x",))
    raw = _raw(path)
    assert migrate(raw, (*MIGRATIONS, extra)) == LATEST_VERSION + 1
    assert "x" in [r[1] for r in raw.execute("PRAGMA table_info(events)")]


def test_migrations_must_be_numbered_without_gaps(path: Path) -> None:
    gap = (Migration(1, "a", ()), Migration(3, "c", ()))
    with pytest.raises(CatalogError, match="without gaps"):
        migrate(_raw(path), gap)


def test_a_file_that_is_not_sqlite_is_refused(path: Path) -> None:
    path.write_bytes(b"definitely not a database" * 100)
    with pytest.raises(CatalogError, match="not a database"):
        Catalog.open(path)


def test_use_after_close_raises_vault_closed(path: Path) -> None:
    catalog = Catalog.open(path)
    catalog.close()
    catalog.close()  # idempotent
    with pytest.raises(VaultClosed):
        catalog.record_event("late")
    with pytest.raises(VaultClosed):
        catalog.list_versions()


def test_an_unsynced_transaction_commits_and_leaves_synchronous_full(path: Path) -> None:
    catalog = Catalog.open(path)
    with catalog.transaction("batch", sync=False) as conn:
        conn.execute("INSERT INTO events (ts, kind, subject, reason, data)"
                     " VALUES (1, 'batch', 's', '', '{}')")
    assert catalog.query("PRAGMA synchronous")[0][0] == 2  # FULL again for everyone else
    with pytest.raises(RuntimeError), catalog.transaction("failing", sync=False) as conn:
        conn.execute("INSERT INTO events (ts, kind, subject, reason, data)"
                     " VALUES (2, 'lost', 's', '', '{}')")
        raise RuntimeError("the caller failed half-way")
    assert catalog.query("PRAGMA synchronous")[0][0] == 2
    catalog.close()
    with pytest.raises(VaultClosed), catalog.transaction("late", sync=False):
        pass
    kinds = [row[0] for row in _raw(path).execute("SELECT kind FROM events")]
    assert "batch" in kinds and "lost" not in kinds


# -- versions -------------------------------------------------------------


def test_versions_round_trip_with_lineage(catalog: Catalog) -> None:
    _seed(catalog, "v1")
    child = catalog.add_version(
        "v2",
        source={"agent.py": "x = 2\n"},
        parents=["v1"],
        operator="mut_constant",
        params={"delta": 0.5},
        reason="faster",
    )
    assert child == VersionRecord(
        id="v2",
        parents=("v1",),
        operator="mut_constant",
        params={"delta": 0.5},
        source={"agent.py": "x = 2\n"},
        status="candidate",
        reason="faster",
        created_at=1001.0,
    )
    assert catalog.get_version("v2") == child
    assert [v.id for v in catalog.list_versions()] == ["v1", "v2"]
    assert catalog.get_version("nope") is None


def test_adding_an_existing_version_returns_the_stored_one(catalog: Catalog) -> None:
    first = _seed(catalog)
    again = catalog.add_version("v1", source=dict(first.source), operator="llm")
    assert again == first


def test_a_version_id_is_never_reused_for_other_source(catalog: Catalog) -> None:
    first = _seed(catalog)
    with pytest.raises(VersionConflict, match="'v1' is already recorded with different"):
        catalog.add_version("v1", source={"other.py": "print('forged')"}, operator="llm")
    assert catalog.get_version("v1") == first


def test_set_version_status(catalog: Catalog) -> None:
    _seed(catalog)
    updated = catalog.set_version_status("v1", "active", "promoted after canary")
    assert (updated.status, updated.reason) == ("active", "promoted after canary")
    assert [v.id for v in catalog.list_versions(status="active")] == ["v1"]
    assert catalog.list_versions(status="candidate") == []
    with pytest.raises(InvalidArgument, match="no version with id 'ghost'"):
        catalog.set_version_status("ghost", "active")


@pytest.mark.parametrize("bad_id", ["", None, 3])
def test_version_id_must_be_text(catalog: Catalog, bad_id: object) -> None:
    with pytest.raises(InvalidArgument, match="version_id"):
        catalog.add_version(bad_id, source={})  # type: ignore[arg-type]


def test_values_json_cannot_encode_are_refused(catalog: Catalog) -> None:
    with pytest.raises(InvalidArgument, match="params must be JSON"):
        catalog.add_version("v1", source={}, params={"blob": b"bytes"})
    assert catalog.list_versions() == []


# -- experiments ----------------------------------------------------------


def test_experiment_lifecycle(catalog: Catalog) -> None:
    _seed(catalog, "base")
    _seed(catalog, "cand")
    created = catalog.add_experiment("canary", "cand", baseline_version="base")
    assert isinstance(created, ExperimentRecord)
    assert (created.stage, created.status, created.decision) == ("shadow", "running", None)
    assert catalog.get_experiment(created.id) == created
    updated = catalog.update_experiment(
        created.id, stage="canary_10", stats={"p_value": 0.03, "n": [50, 50]}
    )
    assert updated.stage == "canary_10" and updated.status == "running"
    assert updated.stats == {"p_value": 0.03, "n": [50, 50]}
    assert updated.updated_at > created.updated_at and updated.created_at == created.created_at
    done = catalog.update_experiment(
        created.id, status="done", decision="promote", reason="better latency"
    )
    assert (done.decision, done.reason, done.stats) == ("promote", "better latency", updated.stats)
    assert [e.id for e in catalog.list_experiments(status="done")] == [created.id]
    assert catalog.list_experiments(kind="genetic") == []


def test_experiment_ids_can_be_chosen(catalog: Catalog) -> None:
    _seed(catalog)
    assert catalog.add_experiment("shadow", "v1", experiment_id="exp-1").id == "exp-1"
    with pytest.raises(InvalidArgument, match="already exists"):
        catalog.add_experiment("shadow", "v1", experiment_id="exp-1")


def test_experiment_on_an_unknown_version_is_refused(catalog: Catalog) -> None:
    with pytest.raises(InvalidArgument, match="does not have"):
        catalog.add_experiment("shadow", "ghost")
    assert catalog.list_experiments() == []


def test_updating_an_unknown_experiment_is_refused(catalog: Catalog) -> None:
    with pytest.raises(InvalidArgument, match="no experiment"):
        catalog.update_experiment("ghost", status="done")


# -- evaluations, feedback, events ----------------------------------------


def test_evaluations_by_version_and_experiment(catalog: Catalog) -> None:
    _seed(catalog)
    experiment = catalog.add_experiment("genetic", "v1")
    a = catalog.add_evaluation("v1", {"fitness": 0.7}, experiment_id=experiment.id, run_id="r1")
    b = catalog.add_evaluation("v1", {}, failure={"kind": "MemoryError", "message": "bomb"})
    assert catalog.evaluations_for("v1") == [a, b]
    assert catalog.evaluations_for("v1", experiment_id=experiment.id) == [a]
    assert b.failure == {"kind": "MemoryError", "message": "bomb"} and a.failure is None
    with pytest.raises(InvalidArgument, match="does not have"):
        catalog.add_evaluation("ghost", {"fitness": 1.0})


@pytest.mark.parametrize("score", [-1, -1.0, 0, 0.5, 1.0])
def test_feedback_in_range_is_stored(catalog: Catalog, score: float) -> None:
    _seed(catalog)
    record = catalog.add_feedback("req-1", score, version_id="v1", comment="ok")
    assert catalog.feedback_for("v1") == [record]
    assert record.score == float(score)


@pytest.mark.parametrize("score", [1.0001, -2, math.inf, math.nan])
def test_feedback_out_of_range_is_refused(catalog: Catalog, score: float) -> None:
    with pytest.raises(InvalidArgument, match="out of range or missing"):
        catalog.add_feedback("req-1", score)
    assert catalog._conn.execute("SELECT count(*) FROM feedback").fetchone()[0] == 0


@pytest.mark.parametrize("score", ["0.5", None, True])
def test_feedback_score_must_be_a_number(catalog: Catalog, score: object) -> None:
    with pytest.raises(InvalidArgument, match="number"):
        catalog.add_feedback("req-1", score)  # type: ignore[arg-type]


def test_the_database_itself_enforces_the_score_range(catalog: Catalog, path: Path) -> None:
    raw = _raw(path)
    for score in (1.5, -1.5, "high"):
        with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
            raw.execute(
                "INSERT INTO feedback (request_id, score, created_at) VALUES ('r', ?, 0)",
                (score,),
            )


def test_events_newest_first_with_limit_and_kind(catalog: Catalog) -> None:
    ids = [
        catalog.record_event("rollback" if n % 2 else "promote", f"v{n}", "why", {"n": n})
        for n in range(5)
    ]
    assert ids == sorted(ids)
    recent = catalog.recent_events(limit=2)
    assert [e.id for e in recent] == ids[:-3:-1]
    assert recent[0] == EventRecord(
        id=ids[4], ts=1004.0, kind="promote", subject="v4", reason="why", data={"n": 4}
    )
    assert [e.subject for e in catalog.recent_events(kind="rollback")] == ["v3", "v1"]
    with pytest.raises(InvalidArgument):
        catalog.recent_events(limit=-1)


# -- threads --------------------------------------------------------------


_THREADS = 6
_PER_THREAD = 40


def test_concurrent_writers_from_threads(path: Path) -> None:
    # two Catalog objects (two connections) shared by several threads each
    catalogs = [Catalog.open(path), Catalog.open(path)]
    _seed(catalogs[0])
    errors: list[BaseException] = []
    ids: list[int] = []

    def work(worker: int) -> None:
        catalog = catalogs[worker % 2]
        try:
            for n in range(_PER_THREAD):
                ids.append(catalog.record_event("tick", f"w{worker}", data={"n": n}))
                catalog.add_evaluation("v1", {"worker": worker, "n": n})
        except BaseException as exc:  # noqa: BLE001 - asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(_THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(set(ids)) == _THREADS * _PER_THREAD
    assert len(catalogs[1].recent_events(limit=10_000)) == _THREADS * _PER_THREAD
    assert len(catalogs[0].evaluations_for("v1")) == _THREADS * _PER_THREAD
    for catalog in catalogs:
        catalog.close()
