"""``project-o bench memory``: durable remember, recall latency and recall quality.

What is measured::

    remember (durable)   SemanticMemory ─ journal ─► Vault (sync WAL: fsync per write)
                         then the vault is reopened and replayed into a fresh store,
                         which must equal the live one bit for bit
    remember (no WAL)    the same texts with an in-memory journal: embedding + apply
    at 10k / 100k        synthetic facts with the labelled facts spread among them:
      recall             ctx.memory.recall(question, k=5), embedding included: p50/p95/p99
      recall, where=     a filter keeping a quarter of the memories
      search             BM25 keyword search
      recall@5           share of labelled questions whose fact is in the top 5,
                         for the store and for an exact float64 brute force written
                         independently here (the baseline); target: store >= 0.95 x exact;
                         and on 200 other queries, the share of the store's top 5 that
                         score as high as the baseline's 5th (ties count)
      snapshot / load    checkpoint size of the semantic store and the time to restore it

Latencies are per call on one thread, after a warm-up, so they include
what a handler pays (embedding the query, filtering, building hits).

Then durable ``ctx.memory.set`` per second through a real supervisor with
1, 8 and 64 concurrent requests, against SQLite FULL in the same run
(:mod:`project_o.bench.memory_sets`).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

import msgpack
import numpy as np

from project_o.agent.semantic import SemanticMemory, SemanticStore
from project_o.agent.vectors import CODE_BITS, EXACT_MAX_ROWS, RERANK
from project_o.bench.memory_corpus import LABELLED, distractors, queries
from project_o.bench.memory_sets import measure_sets
from project_o.bench.overhead_wrk import ensure_wrk
from project_o.bench.report import Report
from project_o.vault import Vault

__all__ = ["run", "run_with"]

#: Recall latency and quality targets (docs/design.md, "Targets").
TARGET_P95_MS: Final = 20.0
TARGET_RECALL_RATIO: Final = 0.95
#: memories held for the latency and quality figures, full and --quick
FULL_SIZES: Final = (10_000, 100_000)
QUICK_SIZES: Final = (10_000,)
#: remembers written through the sync WAL (each one fsyncs)
FULL_DURABLE, QUICK_DURABLE = 2_000, 300
#: timed queries per size, after WARMUP untimed ones
FULL_QUERIES, QUICK_QUERIES = 1_000, 200
WARMUP: Final = 20
#: seconds of wrk load per concurrency for durable ctx.memory.set (memory_sets)
FULL_SET_SECONDS, QUICK_SET_SECONDS = 5, 2
#: metadata shards: where={"shard": 0} keeps a quarter of the memories
SHARDS: Final = 4
#: how close a score must be to the baseline's k-th to count as a true top-k result
#: (float32 against float64 rounding)
SCORE_TOLERANCE: Final = 1e-5
SEED: Final = 20_241_125

Progress = Callable[[str], None]


def run(quick: bool, progress: Progress) -> Report:
    """Measure as described in the module docstring."""
    ensure_wrk()  # the durable sets' load generator: before minutes of work it would end
    if quick:
        report = run_with(QUICK_SIZES, QUICK_DURABLE, QUICK_QUERIES, quick=True,
                          progress=progress)
    else:
        report = run_with(FULL_SIZES, FULL_DURABLE, FULL_QUERIES, quick=False,
                          progress=progress)
    measure_sets(report, QUICK_SET_SECONDS if quick else FULL_SET_SECONDS, progress)
    return report


def run_with(sizes: Sequence[int], durable: int, calls: int, *, quick: bool,
             progress: Progress) -> Report:
    """The benchmark at chosen scales (the tests run it tiny)."""
    report = Report(name="memory", quick=quick)
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="project-o-bench-memory-") as tmp:
        _measure_remember(report, Path(tmp), durable, progress)
    for size in sizes:
        _measure_size(report, size, calls, progress)
    report.notes.append(
        f"recall scans exactly up to {EXACT_MAX_ROWS:,} memories; above, it ranks all by "
        f"{CODE_BITS}-bit SimHash and rescores the nearest {RERANK:,} exactly "
        f"(project_o.agent.vectors); embedder {SemanticStore().embedder.name}"
    )
    report.notes.append(
        f"load average {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end, on "
        f"{os.cpu_count()} CPUs: p95/p99 include time the scheduler gave other processes"
    )
    return report


# ------------------------------------------------------------------ remember


def _measure_remember(report: Report, root: Path, count: int, progress: Progress) -> None:
    texts = distractors(count, SEED)
    progress(f"remember {count} memories through a sync WAL")
    vault = Vault.open(root / "vault", durability="sync")
    live = SemanticStore()
    try:
        durable = _timed_remembers(SemanticMemory(live, _journal_to(vault)), texts)
    finally:
        vault.close()
    progress("reopen the vault and replay it")
    replayed, replay_s = _replay(root / "vault")
    identical = _snapshot_bytes(replayed) == _snapshot_bytes(live)
    report.rows.append(_row("remember, durable (sync WAL)", count, durable))
    report.notes.append(
        f"the vault reopened and replayed ({count / replay_s:,.0f} entries/s) gives a store "
        f"{'identical to' if identical else 'DIFFERENT from (a bug: report it)'} the live one"
    )
    report.target("replayed store = live store", float(identical), "= 1", identical)
    progress(f"remember {count} memories with an in-memory journal")
    journal: list[tuple[str, Any]] = []
    in_memory = _timed_remembers(
        SemanticMemory(SemanticStore(), lambda op, data: journal.append((op, data))), texts)
    report.rows.append(_row("remember, in memory (no WAL)", count, in_memory))


def _journal_to(vault: Vault) -> Callable[[str, dict[str, Any]], None]:
    def journal(operation: str, data: dict[str, Any]) -> None:
        vault.append(operation, data)  # sync mode: returns once fsynced

    return journal


def _timed_remembers(memory: SemanticMemory, texts: Sequence[str]) -> list[float]:
    timings = []
    for n, text in enumerate(texts):
        start = time.perf_counter()
        memory.remember(text, shard=n % SHARDS)
        timings.append(time.perf_counter() - start)
    return timings


def _replay(path: Path) -> tuple[SemanticStore, float]:
    store = SemanticStore()
    with Vault.open(path, durability="sync") as vault:
        point = vault.recover()
        start = time.perf_counter()
        for entry in point.entries:
            store.apply(entry.operation, entry.data)
        return store, max(time.perf_counter() - start, 1e-9)


def _snapshot_bytes(store: SemanticStore) -> bytes:
    snapshot = store.snapshot()
    snapshot.pop("created")  # wall-clock times differ between the two runs' stores
    return msgpack.packb(snapshot, use_bin_type=True)  # type: ignore[no-any-return]


# ------------------------------------------------------------ one store size


def _measure_size(report: Report, size: int, count: int, progress: Progress) -> None:
    progress(f"{size:,} memories: filling")
    memory, expected = _filled(size)
    asks = queries(count, SEED + size)
    progress(f"{size:,} memories: recall, filtered recall, search")
    recall = _row(f"recall k=5, {size:,}", count, _timed(memory.recall, asks))
    report.rows.append(recall)
    recall_p95 = recall["p95 ms"]
    filtered = _timed(lambda q: memory.recall(q, where={"shard": 0}), asks)
    report.rows.append(_row(f"recall k=5 where=, {size:,}", count, filtered))
    report.rows.append(_row(f"search k=5, {size:,}", count, _timed(memory.search, asks)))
    progress(f"{size:,} memories: quality against the exact baseline")
    quality = _quality(memory, expected, asks[:200])
    report.notes.append(
        f"{size:,} memories: labelled recall@5 {quality['store']:.3f} (exact baseline "
        f"{quality['exact']:.3f}, {len(LABELLED)} questions); top-5 agreement with the "
        f"baseline on {min(len(asks), 200)} other queries {quality['agreement']:.3f}"
    )
    report.notes.append(_snapshot_note(memory.store, size))
    ratio = quality["store"] / max(quality["exact"], 1e-9)
    report.target(f"recall p95 at {size:,} (ms)", recall_p95, f"<= {TARGET_P95_MS:g}",
                  recall_p95 <= TARGET_P95_MS)
    report.target(f"recall@5 store / exact at {size:,}", ratio, f">= {TARGET_RECALL_RATIO}",
                  ratio >= TARGET_RECALL_RATIO)


def _filled(size: int) -> tuple[SemanticMemory, dict[str, str]]:
    """A store of ``size`` memories, the labelled facts spread evenly; question -> id."""
    memory = SemanticMemory(SemanticStore(), lambda op, data: None)
    haystack = distractors(size - len(LABELLED), SEED + 1)
    every = max(1, len(haystack) // len(LABELLED))
    expected: dict[str, str] = {}
    facts = iter(LABELLED)
    for n, text in enumerate(haystack):
        if n % every == 0 and (pair := next(facts, None)) is not None:
            expected[pair[1]] = memory.remember(pair[0], shard=len(expected) % SHARDS)
        memory.remember(text, shard=n % SHARDS)
    for fact, question in facts:  # any left when the haystack is small
        expected[question] = memory.remember(fact, shard=0)
    return memory, expected


def _timed(call: Callable[[str], object], asks: Sequence[str]) -> list[float]:
    for ask in asks[:WARMUP]:
        call(ask)
    timings = []
    for ask in asks:
        start = time.perf_counter()
        call(ask)
        timings.append(time.perf_counter() - start)
    return timings


def _quality(memory: SemanticMemory, expected: dict[str, str],
             asks: Sequence[str]) -> dict[str, float]:
    """recall@5 of the store and of the baseline, and top-5 agreement on other queries."""
    baseline = _Baseline(memory.store)
    store_hits = sum(expected[q] in {h.id for h in memory.recall(q, k=5)} for q in expected)
    exact_hits = sum(expected[q] in baseline.top_ids(q, 5) for q in expected)
    agree = [baseline.agreement(q, [h.score for h in memory.recall(q, k=5)], 5) for q in asks]
    return {"store": store_hits / len(expected), "exact": exact_hits / len(expected),
            "agreement": float(np.mean(agree))}


class _Baseline:
    """Exact search written independently of the store: float64, row-major, full sort."""

    def __init__(self, store: SemanticStore) -> None:
        snapshot = store.snapshot()
        self.embedder = store.embedder
        self.ids = snapshot["ids"]
        flat = np.frombuffer(snapshot["vectors"]["data"], dtype="<f4")
        self.matrix = flat.reshape(len(self.ids), -1).astype(np.float64)

    def scores(self, query: str) -> np.ndarray:
        vector = self.embedder.embed([query])[0].astype(np.float64)
        return np.asarray(self.matrix @ vector)

    def top_ids(self, query: str, k: int) -> set[str]:
        order = np.argsort(-self.scores(query), kind="stable")[:k]
        return {self.ids[i] for i in order}

    def agreement(self, query: str, found: list[float], k: int) -> float:
        """Share of the store's k scores that reach the baseline's k-th best (ties count)."""
        kth = float(np.sort(self.scores(query))[-k])
        return sum(score >= kth - SCORE_TOLERANCE for score in found) / k


def _snapshot_note(store: SemanticStore, size: int) -> str:
    start = time.perf_counter()
    packed = msgpack.packb(store.snapshot(), use_bin_type=True)
    packed_s = time.perf_counter() - start
    start = time.perf_counter()
    SemanticStore().load(msgpack.unpackb(packed, raw=False))
    load_s = time.perf_counter() - start
    return (f"{size:,} memories: checkpoint section {len(packed) / 2**20:.1f} MiB packed, "
            f"{packed_s * 1e3:.0f} ms to snapshot and pack, {load_s * 1e3:.0f} ms to load "
            "(no re-embedding)")


def _row(measure: str, calls: int, timings: list[float]) -> dict[str, Any]:
    cuts = statistics.quantiles(timings, n=100)
    return {"measure": measure, "calls": calls, "per s": len(timings) / sum(timings),
            "p50 ms": cuts[49] * 1e3, "p95 ms": cuts[94] * 1e3, "p99 ms": cuts[98] * 1e3}
