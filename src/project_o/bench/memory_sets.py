"""Durable ``ctx.memory.set`` per second through a real supervisor, against SQLite FULL.

::

    wrk -c1 / -c8 / -c64 ── POST /v1/requests {"sets": 10} ──► supervisor ── main instance
                                                                 │ 10 x ctx.memory.set (a plain
                                                                 │ handler, 32 threads) or await
                                                                 │ ctx.memory.aset (async, 64 at
                                                                 │ once), each returning after
                                                                 ▼ the WAL's group-commit fsync
    SQLite baseline, same run: 1 / 8 / 64 threads, a connection each, journal_mode=WAL,
    synchronous=FULL, one transaction per entry (the wal benchmark's baseline)

Sets per second = requests per second x sets per request. The target
(64 concurrent requests: >= 20,000/s, group commit across requests and
instances) is read on both handlers. Each request has one write in
flight at a time, so one fsync covers at most as many writes as requests
run at once in the instance (32 threads for a plain handler, 64 for an
async one): the figure is about that many writes per fsync-and-round-trip.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from project_o.bench.agents import SET_AGENT, SET_AGENT_ASYNC
from project_o.bench.overhead import cpu_seconds
from project_o.bench.overhead_wrk import WrkResult, ensure_wrk, run_wrk
from project_o.bench.report import Report
from project_o.bench.wal import measure_sqlite
from project_o.stack import Stack

__all__ = ["CONCURRENCY", "FLAVOURS", "SETS_PER_REQUEST", "measure_sets"]

#: concurrent requests (wrk connections) and SQLite writer threads
CONCURRENCY: Final = (1, 8, 64)
#: durable sets each request makes
SETS_PER_REQUEST: Final = 10
#: the target at the highest concurrency (docs/design.md, "Targets")
TARGET_SETS_PER_S: Final = 20_000.0
#: (what the rows call a set, the agent that makes them)
FLAVOURS: Final = (("ctx.memory.set", SET_AGENT), ("await ctx.memory.aset", SET_AGENT_ASYNC))


def measure_sets(report: Report, seconds: int, progress: Callable[[str], None],
                 concurrency: tuple[int, ...] = CONCURRENCY,
                 flavours: tuple[tuple[str, Path], ...] = FLAVOURS) -> None:
    """Add a row per handler and concurrency, and the target at the highest one, to ``report``."""
    wrk = ensure_wrk()
    body = json.dumps({"input": {"sets": SETS_PER_REQUEST, "size": 100}}).encode()
    sqlite_rates: dict[int, float] = {}
    with tempfile.TemporaryDirectory(prefix="project-o-bench-sets-") as tmp:
        root = Path(tmp)
        for name, agent in flavours:
            with Stack(root / f"vault-{agent.stem}", agent) as stack:
                url = f"{stack.url}/v1/requests"
                run_wrk(wrk, url, body, stack.token, threads=1, connections=1, seconds=1)  # warm
                processes = {"supervisor": stack.supervisor_pid(), **stack.pids()}
                for n in concurrency:
                    progress(f"durable {name}, {n} concurrent requests (SQLite FULL once)")
                    before = cpu_seconds(processes)
                    result = run_wrk(wrk, url, body, stack.token, threads=min(n, 2),
                                     connections=n, seconds=seconds)
                    spent = {role: cpu - before[role]
                             for role, cpu in cpu_seconds(processes).items()}
                    if n not in sqlite_rates:
                        sqlite_rates[n] = measure_sqlite(root / f"sqlite-{n}", "per-connection",
                                                         n, seconds)["rate"]
                    sets = result.requests * SETS_PER_REQUEST
                    report.rows.append(_row(name, n, result.rate * SETS_PER_REQUEST, result,
                                            sqlite_rates[n], spent, sets))
            top = report.rows[-1]
            report.target(f"durable {name} /s, {concurrency[-1]} concurrent requests",
                          top["per s"], f">= {TARGET_SETS_PER_S:,.0f}",
                          top["per s"] >= TARGET_SETS_PER_S)
    report.notes.append(
        f"ctx.memory.set (a plain handler) / await ctx.memory.aset (an async def one): "
        f"{SETS_PER_REQUEST} sets of 100 bytes per request, one after the other, served by a real "
        "supervisor (sync durability: each set returns after the group-commit fsync), driven "
        "by wrk (its own CPU per request in each row); SQLite: per-connection threads, "
        "journal_mode=WAL, synchronous=FULL, a transaction per entry, in the same run; "
        "CPU us/set: each server process's CPU per set (the HTTP request's share included), "
        "so the rate times their sum is the cores the server kept busy: when that nears the "
        "cores free, CPU, not the disk or the group commit, set the pace")


def _row(name: str, concurrent: int, rate: float, result: WrkResult, sqlite_rate: float,
         spent: dict[str, float], sets: int) -> dict[str, Any]:
    per_set = 1e6 / sets if sets else 0.0
    return {"measure": f"{name}, {concurrent} concurrent requests",
            "per s": round(rate, 1), "p50 ms": round(result.p50_ms, 2), "errors": result.errors,
            # the client's own CPU per request: whether it, not the supervisor, set the pace
            "wrk CPU us/req": round(result.client_cpu_us, 1),
            # where the server's CPU went per set: the supervisor (HTTP, journal, WAL), the
            # main (the handler, its writes) and the standby (applying the tail)
            **{f"{role} CPU us/set": round(cpu * per_set, 1) for role, cpu in spent.items()},
            "SQLite FULL per s": round(sqlite_rate, 1),
            "x SQLite FULL": round(rate / sqlite_rate, 3) if sqlite_rate else None}
