"""``project-o bench wal``: durable entries per second, against SQLite in the same run.

What is measured::

    N writer threads ──append(~256-byte entry)──▶ WAL (sync: returns once fsynced;
                                                        batch: fsync per 100 / 1 s)
    N writer threads ──BEGIN; INSERT; COMMIT──▶ SQLite (journal_mode=WAL,
                                                        synchronous=FULL)
    the WAL again, sealed ("wal sealed": AES-256-GCM per record, encryption at
    rest), same writers, each run right after its plain twin: its rows give
    "× plain"; what a seal costs in CPU per append is timed apart

Every figure counts entries that are on stable storage when the clock
stops (batch mode ends with a flush). Each configuration runs several
times, interleaved with the others, and reports its median, so a noisy
neighbour on the disk hurts every system alike. SQLite with N writers is
compared against its best showing (N connections or one), since an
application can always funnel its writers into one connection.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack

from project_o.bench.report import Report
from project_o.vault.fileio import FileLayer
from project_o.vault.sealing import Keyring
from project_o.vault.wal import WAL
from project_o.vault.wal_record import encode

__all__ = ["measure_sqlite", "run"]

#: Throughput targets (docs/design.md, "Targets").
TARGET_RATE_64 = 100_000
TARGET_RATIO_64 = 10.0
TARGET_RATIO_1 = 1.0
#: Seconds per measurement and repetitions (interleaved), full and --quick.
FULL_SECONDS, FULL_REPEATS = 1.5, 3
QUICK_SECONDS, QUICK_REPEATS = 0.25, 1
#: Writers per configuration; --quick skips the middle one.
FULL_WRITERS = (1, 8, 64)
QUICK_WRITERS = (1, 64)
#: A memory write of about 256 bytes packed: a short fact with its key and metadata.
VALUE_SIZE = 230
#: How long SQLite writers wait for the write lock before giving up.
SQLITE_BUSY_TIMEOUT_MS = 60_000
#: The plain WAL, and the WAL sealing every record (encryption at rest).
PLAIN, SEALED = "wal", "wal sealed"
#: Appends per timing of the seal's CPU cost.
APPEND_SAMPLES = 20_000

Progress = Callable[[str], None]


def run(quick: bool, progress: Progress) -> Report:
    """Measure the WAL and SQLite side by side; see the module docstring."""
    seconds, repeats = (QUICK_SECONDS, QUICK_REPEATS) if quick else (FULL_SECONDS, FULL_REPEATS)
    writers = QUICK_WRITERS if quick else FULL_WRITERS
    configs: list[tuple[str, str, int]] = []
    for mode, n in [("sync", n) for n in writers] + [("batch", n) for n in (1, writers[-1])]:
        # each sealed run right after its plain twin: the disk's mood drifts in seconds
        configs += [(PLAIN, mode, n), (SEALED, mode, n)]
    configs += [("sqlite", "per-connection", n) for n in writers]
    configs += [("sqlite", "shared-connection", n) for n in writers if n > 1]
    samples: dict[tuple[str, str, int], list[dict[str, float]]] = {c: [] for c in configs}
    with tempfile.TemporaryDirectory(prefix="project-o-bench-wal-") as tmp:
        root = Path(tmp)
        fsync_us = _fsync_latency_us(root)
        for repeat in range(repeats):
            for index, (system, mode, n) in enumerate(configs):
                progress(f"round {repeat + 1}/{repeats}: {system} {mode}, {n} writers")
                where = root / f"{repeat}-{index}"
                if system == "sqlite":
                    sample = measure_sqlite(where, mode, n, seconds)
                else:
                    sample = _measure_wal(where, mode, n, seconds, sealed=system == SEALED)
                samples[(system, mode, n)].append(sample)
        progress("CPU per append, plain and sealed")
        seal_costs = _append_cpu_costs(root)
    report = Report(name="wal", quick=quick)
    _fill(report, samples, writers)
    report.notes.append(
        f"fsync of a growing file on the bench filesystem ({_filesystem(Path(tempfile.gettempdir()))}"
        f"): median {fsync_us:.0f} µs; figures are medians of {repeats} interleaved runs of "
        f"{seconds} s; a record is {_entry_size()} bytes (data ≈ 256)"
    )
    report.notes.append(_sync_note(samples[("wal", "sync", writers[-1])], writers[-1], fsync_us))
    report.notes.append(_seal_note(*seal_costs))
    return report


# ------------------------------------------------------------------ the WAL


class _CountingLayer(FileLayer):
    """The real file layer, counting syncs (how many entries share one) and timing them."""

    def __init__(self) -> None:
        self.fsyncs = 0
        self.sync_seconds: list[float] = []

    def fdatasync(self, fd: int) -> None:
        start = time.perf_counter()
        super().fdatasync(fd)
        self.sync_seconds.append(time.perf_counter() - start)
        self.fsyncs += 1

    def fsync(self, fd: int) -> None:
        super().fsync(fd)
        self.fsyncs += 1


def _measure_wal(
    directory: Path, mode: str, writers: int, seconds: float, *, sealed: bool = False
) -> dict[str, float]:
    layer = _CountingLayer()
    keyring = Keyring([os.urandom(32)]) if sealed else None
    wal = WAL.open(directory, durability=mode, file_layer=layer,  # type: ignore[arg-type]
                   keyring=keyring)
    try:
        elapsed, count = _drive(writers, seconds, lambda data: wal.append("memory_set", data))
        start = time.perf_counter()
        wal.flush()  # batch mode: what is not synced yet does not count as durable
        elapsed += time.perf_counter() - start
    finally:
        wal.close()
    sync_us = statistics.median(layer.sync_seconds) * 1e6 if layer.sync_seconds else 0.0
    return {"rate": count / elapsed, "per_fsync": count / max(1, layer.fsyncs), "sync_us": sync_us}


# ------------------------------------------------------------------- SQLite


def measure_sqlite(directory: Path, mode: str, writers: int, seconds: float) -> dict[str, float]:
    """SQLite's baseline: entries/s of ``writers`` threads, a FULL-synchronous transaction
    per entry, on a connection each (``mode`` "per-connection") or one shared."""
    directory.mkdir(parents=True)
    path = directory / "bench.sqlite"
    setup = _connect(path)
    setup.execute(
        "CREATE TABLE wal (sequence INTEGER PRIMARY KEY, timestamp REAL, operation TEXT, "
        "data BLOB, checksum TEXT)"
    )
    local = threading.local()
    shared_lock = threading.Lock()

    def insert(data: Any) -> None:
        packed = msgpack.packb(data)
        checksum = hashlib.sha256(packed).hexdigest()  # the same hashing work as the WAL
        if mode == "shared-connection":
            with shared_lock:
                _commit_one(setup, packed, checksum)
            return
        if not hasattr(local, "connection"):
            local.connection = _connect(path)
        _commit_one(local.connection, packed, checksum)

    try:
        elapsed, count = _drive(writers, seconds, insert)
    finally:
        setup.close()
    return {"rate": count / elapsed}


def _connect(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    connection.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    return connection


def _commit_one(connection: sqlite3.Connection, packed: bytes, checksum: str) -> None:
    connection.execute("BEGIN IMMEDIATE")
    connection.execute(
        "INSERT INTO wal (timestamp, operation, data, checksum) VALUES (?, ?, ?, ?)",
        (time.time(), "memory_set", packed, checksum),
    )
    connection.execute("COMMIT")


# ------------------------------------------------------------------ helpers


def _drive(writers: int, seconds: float, write: Callable[[Any], Any]) -> tuple[float, int]:
    """Run ``writers`` threads calling ``write`` until ``seconds`` pass; (elapsed, count)."""
    counts = [0] * writers
    start_line = threading.Barrier(writers + 1)
    stop_at = [0.0]

    def writer(index: int) -> None:
        data = {"key": f"user:{index}:profile", "value": "x" * VALUE_SIZE}
        start_line.wait()
        done = 0
        while time.perf_counter() < stop_at[0]:
            write(data)
            done += 1
        counts[index] = done

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(writers)]
    for thread in threads:
        thread.start()
    start = time.perf_counter()
    stop_at[0] = start + seconds
    start_line.wait()
    for thread in threads:
        thread.join()
    return time.perf_counter() - start, sum(counts)


def _append_cpu_costs(root: Path) -> tuple[float, float]:
    """CPU µs one append costs its writer's thread, plain and sealed (batch mode, 1 writer).

    Thread CPU time, not wall time: it counts only the work (pack, encode,
    seal, pwrite), so a loaded machine changes it little where it makes
    the wall-clock rows swing.
    """
    data = {"key": "user:0:profile", "value": "x" * VALUE_SIZE}
    costs: dict[bool, list[float]] = {False: [], True: []}
    for repeat in range(3):  # alternated, so both see the same machine
        for sealed in (False, True):
            keyring = Keyring([os.urandom(32)]) if sealed else None
            with WAL.open(root / f"cpu-{repeat}-{sealed}", durability="batch",
                          keyring=keyring) as wal:
                start = time.thread_time()
                for _ in range(APPEND_SAMPLES):
                    wal.append("memory_set", data)
                costs[sealed].append((time.thread_time() - start) / APPEND_SAMPLES * 1e6)
    return min(costs[False]), min(costs[True])


def _seal_note(plain_us: float, sealed_us: float) -> str:
    return (
        f"encryption at rest: an append costs its writer {plain_us:.1f} µs of CPU plain, "
        f"{sealed_us:.1f} µs sealed (AES-256-GCM; {sealed_us / plain_us:.2f}×; thread CPU "
        f"time, batch mode, best of 3 × {APPEND_SAMPLES:,}); \"× plain\" compares each sealed "
        "row with its plain twin, run just before it"
    )


def _fsync_latency_us(root: Path, samples: int = 200) -> float:
    path = root / "fsync-probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    timings = []
    try:
        for _ in range(samples):
            os.write(fd, b"x" * 300)
            start = time.perf_counter()
            os.fsync(fd)
            timings.append(time.perf_counter() - start)
    finally:
        os.close(fd)
        path.unlink()
    return statistics.median(timings) * 1e6


def _filesystem(path: Path) -> str:
    """The type of the filesystem holding ``path`` (tmpfs would make fsync free)."""
    best, kind = "", "unknown"
    try:
        with open("/proc/mounts", encoding="utf-8") as mounts:
            for line in mounts:
                _, mount_point, fs_type, *_ = line.split()
                if str(path.resolve()).startswith(mount_point) and len(mount_point) > len(best):
                    best, kind = mount_point, fs_type
    except OSError:
        pass
    return kind


def _entry_size() -> int:
    data = {"key": "user:0:profile", "value": "x" * VALUE_SIZE}
    return len(encode(1_000_000, time.time(), "memory_set", data))


def _fill(
    report: Report,
    samples: dict[tuple[str, str, int], list[dict[str, float]]],
    writers: tuple[int, ...],
) -> None:
    median = {key: statistics.median(s["rate"] for s in runs) for key, runs in samples.items()}

    def sqlite_best(n: int) -> float:
        candidates = [median[("sqlite", "per-connection", 1)]]
        candidates += [v for (system, _, k), v in median.items() if system == "sqlite" and k == n]
        return max(candidates)

    for (system, mode, n), runs in samples.items():
        row: dict[str, Any] = {
            "system": system,
            "mode": mode,
            "writers": n,
            "entries/s": median[(system, mode, n)],
        }
        if system in (PLAIN, SEALED):
            row["entries/fsync"] = statistics.median(s["per_fsync"] for s in runs)
            row["× sqlite (best)"] = median[(system, mode, n)] / sqlite_best(n)
        if system == SEALED:
            row["× plain"] = median[(system, mode, n)] / median[(PLAIN, mode, n)]
        report.rows.append(row)
    many = writers[-1]
    rate_many = median[("wal", "sync", many)]
    ratio_many = rate_many / sqlite_best(many)
    ratio_one = median[("wal", "sync", 1)] / median[("sqlite", "per-connection", 1)]
    report.target(
        f"sync, {many} writers: entries/s",
        rate_many,
        f">= {TARGET_RATE_64:,}",
        rate_many >= TARGET_RATE_64,
    )
    report.target(
        f"sync, {many} writers: × SQLite",
        ratio_many,
        f">= {TARGET_RATIO_64:g}×",
        ratio_many >= TARGET_RATIO_64,
    )
    report.target(
        "sync, 1 writer: × SQLite",
        ratio_one,
        f">= {TARGET_RATIO_1:g}×",
        ratio_one >= TARGET_RATIO_1,
    )


def _sync_note(runs: list[dict[str, float]], writers: int, fsync_us: float) -> str:
    """Where the time of the many-writer rounds goes: the disk, or the GIL."""
    per_sync = statistics.median(s["per_fsync"] for s in runs)
    sync_us = statistics.median(s["sync_us"] for s in runs)
    return (
        f"sync, {writers} writers: {per_sync:.1f} entries share each fdatasync; the call "
        f"takes {sync_us:.0f} µs as the round's thread sees it (disk plus waiting to get "
        f"the GIL back) against {fsync_us:.0f} µs for a lone fsync: {writers} Python "
        f"threads take turns on one GIL on {os.cpu_count()} CPUs"
    )
