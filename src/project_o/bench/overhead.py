"""``project-o bench overhead``: what supervision costs per request, against a plain app.

::

    wrk -t2 -c32 / -t1 -c1 (C, epoll; its own CPU measured) ── POST /v1/requests + token
       │                                              │
       ▼                                              ▼
    Project O: gateway + supervisor ─ unix socket ─   plain FastAPI on uvicorn, one process
               main instance (standby running)        (overhead_servers.py): the same handler,
                                                      a sync one in FastAPI's thread pool

    handlers (bench/agents/work_agent*.py): 0 ms, 1 ms of CPU, 100 ms of I/O;
    sync, and async where the agent API takes async handlers
    also: wrk against a trivial server (the load generator's ceiling), the same
    load with a dashboard watching, the PSS of the stack, and the 1 ms CPU
    handler served by --instances 2 against --instances 1 (a pool of mains)

Each figure pair (Project O, plain) is measured in the same run, one after
the other, with the same wrk command: requests/s, p50/p99 latency as wrk
sees it, errors, and CPU per request of the server processes (psutil:
supervisor + zygote + instances for Project O, the uvicorn process for the
plain app) and of wrk itself. Each row says what limited it: a process at
a full core, all cores busy, or neither (a closed loop waiting on answers).
Targets (docs/design.md, "Targets"): throughput ratio >= 0.9 (0 ms, 1 ms,
100 ms at 32 connections), p50 ratio <= 1.1 (100 ms at 32 connections and
1 ms at 1 connection), PSS <= 100 MB, dashboard watching >= 0.95.

Memory: PSS (proportional set size: shared pages split between the
processes that share them) of supervisor + main + standby serving the
built-in assistant. The zygote is reported apart: it is the fork template
the instances share pages with.
"""

from __future__ import annotations

import gc
import json
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import psutil

from project_o.bench.agents import WORK_AGENT, WORK_AGENT_ASYNC
from project_o.bench.overhead_servers import ServerProcess
from project_o.bench.overhead_wrk import WrkResult, ensure_wrk, run_wrk
from project_o.bench.report import Report
from project_o.bench.shadows import pss
from project_o.dashboard.client import LiveReader
from project_o.runtime.loader import load_agent
from project_o.stack import Stack
from project_o.supervisor.options import builtin_agent_path

__all__ = [
    "FLAVOURS",
    "LOADS",
    "WORKS",
    "Flavour",
    "Load",
    "Work",
    "cpu_seconds",
    "flavours_supported",
    "measure_memory",
    "run",
    "run_with",
]

MB: Final = 1_000_000
#: seconds of load per measurement; quick runs are shorter (wrk counts whole seconds)
FULL_SECONDS: Final = 10
QUICK_SECONDS: Final = 3
#: throughput, latency and memory targets (docs/design.md, "Targets")
THROUGHPUT_RATIO_GOAL: Final = 0.9
LATENCY_RATIO_GOAL: Final = 1.1
PSS_GOAL_MB: Final = 100.0
#: a dashboard watching may cost the agent at most 5 % of its throughput
DASHBOARD_RATIO_GOAL: Final = 0.95
#: the load generator must reach at least this multiple of the fastest server figure
CEILING_GOAL: Final = 2.0
#: the 1 ms CPU handler's req/s with --instances 2 over --instances 1 (a pool of mains)
SCALING_GOAL: Final = 1.3
SCALING_WORK: Final = "1 ms CPU"
#: a process at this share of one core, or all cores this busy, limited the figure
CPU_BOUND: Final = 0.85
_DRAIN_TIMEOUT_S: Final = 120.0

PROJECT_O: Final = "Project O"
PLAIN: Final = "plain FastAPI"


@dataclass(frozen=True)
class Work:
    """What the handler does for each request."""

    name: str
    input: dict[str, Any]
    #: how long the handler waits (not computing), for the overlap figure
    wait_ms: float = 0.0


@dataclass(frozen=True)
class Flavour:
    """How the handler is written: the agent file that serves it."""

    name: str
    agent: Path


@dataclass(frozen=True)
class Load:
    """One wrk setting (wrk needs at least one connection per thread)."""

    threads: int
    connections: int


WORKS: Final = (Work("0 ms", {}), Work("1 ms CPU", {"ms": 1}),
                Work("100 ms I/O", {"io_ms": 100}, wait_ms=100.0))
FLAVOURS: Final = (Flavour("sync", WORK_AGENT), Flavour("async", WORK_AGENT_ASYNC))
LOADS: Final = (Load(2, 32), Load(1, 1))

Progress = Callable[[str], None]


def run(quick: bool, progress: Progress) -> Report:
    """Project O against a plain FastAPI app under wrk; the stack's PSS; two mains over one."""
    return run_with(QUICK_SECONDS if quick else FULL_SECONDS, quick, progress, scaling=True)


def run_with(seconds: int, quick: bool, progress: Progress, *,
             works: Sequence[Work] = WORKS, loads: Sequence[Load] = LOADS,
             flavours: Sequence[Flavour] | None = None, dashboard_rounds: int | None = None,
             memory: bool = True, scaling: bool = False) -> Report:
    """The benchmark with chosen knobs (the tests run it small)."""
    wrk = ensure_wrk()
    report = Report(name="overhead", quick=quick)
    chosen = flavours_supported(FLAVOURS) if flavours is None else list(flavours)
    rounds = (2 if quick else 3) if dashboard_rounds is None else dashboard_rounds
    with tempfile.TemporaryDirectory(prefix="project-o-bench-overhead-") as tmp:
        root = Path(tmp)
        progress("the load generator's ceiling: wrk against a trivial server")
        ceiling = _ceiling(wrk, root, seconds)
        for flavour in chosen:
            _flavour(report, wrk, root, flavour, works, loads, seconds, rounds, progress)
        _ceiling_target(report, ceiling)
        if scaling:
            progress(f"sync {SCALING_WORK}, 32 connections: {PROJECT_O} with --instances 1, "
                     f"then 2, {seconds} s each")
            _scaling(report, wrk, root, seconds)
        if memory:
            progress("memory of the stack serving the built-in assistant")
            _memory(report, measure_memory(root / "vault-assistant"))
    _notes(report, chosen)
    return report


def flavours_supported(flavours: Sequence[Flavour]) -> list[Flavour]:
    """The flavours whose agent answers in-process (async handlers: once the API takes them)."""
    supported = []
    for flavour in flavours:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # an unawaited coroutine, where async is not taken
            try:
                answer = load_agent(flavour.agent).test_client().call({})
            except Exception:  # noqa: BLE001 - any refusal means: not supported
                answer = None
            gc.collect()
        if answer == {"ok": True}:
            supported.append(flavour)
    return supported


# ------------------------------------------------------------------ servers


@dataclass
class _Server:
    """A server under load: where it listens and which processes serve it."""

    name: str
    url: str
    token: str
    processes: dict[str, int]
    drain: Callable[[], None] = field(default=lambda: None)


def _flavour(report: Report, wrk: str, root: Path, flavour: Flavour, works: Sequence[Work],
             loads: Sequence[Load], seconds: int, rounds: int, progress: Progress) -> None:
    token = "bench-" + os.urandom(8).hex()
    with Stack(root / f"vault-{flavour.name}", flavour.agent) as stack, \
            ServerProcess("plain", root, str(flavour.agent), token=token) as plain:
        servers = (_Server(PLAIN, plain.url, token, {"uvicorn": plain.pid}),
                   _project_o(stack))
        for server in servers:  # connections made, lazy imports done: not counted
            _load(wrk, server, works[0], Load(1, 4), 1)
        for work in works:
            for load in loads:
                progress(f"{flavour.name} {work.name}, {load.connections} connections: "
                         f"{PLAIN}, then {PROJECT_O}, {seconds} s each")
                rows = [_measure(wrk, server, work, load, seconds) for server in servers]
                _compare(report, flavour, work, load, *rows)
        if rounds and any(w.name == "1 ms CPU" for w in works):
            progress(f"{flavour.name} 1 ms CPU: {PROJECT_O} with a dashboard watching")
            _with_dashboard(report, wrk, stack, servers[1], flavour, seconds, rounds)


def _scaling(report: Report, wrk: str, root: Path, seconds: int) -> None:
    """The 1 ms CPU handler (sync), 32 connections, served by one main, then by two."""
    work = next(w for w in WORKS if w.name == SCALING_WORK)
    rows = []
    for instances in (1, 2):
        with Stack(root / f"vault-instances-{instances}", WORK_AGENT,
                   ["--instances", str(instances)]) as stack:
            server = _project_o(stack)
            _load(wrk, server, WORKS[0], Load(1, 4), 1)  # warm: connections, lazy imports
            row = _measure(wrk, server, work, Load(2, 32), seconds)
        rows.append({"handler": f"{work.name} --instances {instances}", "flavour": "sync",
                     "connections": 32, **row})
    ratio = rows[1]["req/s"] / rows[0]["req/s"] if rows[0]["req/s"] else 0.0
    rows[1]["req/s ratio"] = round(ratio, 3)
    report.rows.extend(rows)
    report.target(f"req/s --instances 2 / --instances 1, sync {work.name}, 32 conn.", ratio,
                  f">= {SCALING_GOAL:g}", ratio >= SCALING_GOAL)


def _project_o(stack: Stack) -> _Server:
    roles = stack.pids()
    supervisor = psutil.Process(stack.supervisor_pid())
    processes = {"supervisor": supervisor.pid, **roles}
    known = set(processes.values())
    for n, child in enumerate(p for p in supervisor.children(recursive=True)
                              if p.pid not in known):
        processes[f"zygote{n or ''}"] = child.pid
    return _Server(PROJECT_O, stack.url, stack.token, processes, drain=lambda: _drain(stack))


def _drain(stack: Stack) -> None:
    """Wait until the instances answered what wrk left in flight (the next run starts clean)."""
    deadline = time.monotonic() + _DRAIN_TIMEOUT_S
    while time.monotonic() < deadline:
        if not any(i["in_flight"] for i in stack.status()["instances"]):
            return
        time.sleep(0.05)
    raise TimeoutError(f"the supervisor still had requests in flight after {_DRAIN_TIMEOUT_S} s")


def _ceiling(wrk: str, root: Path, seconds: int) -> dict[str, Any]:
    with ServerProcess("trivial", root) as trivial:
        server = _Server("trivial (wrk ceiling)", trivial.url, "", {"trivial": trivial.pid})
        _load(wrk, server, WORKS[0], Load(1, 4), 1)
        return _measure(wrk, server, WORKS[0], LOADS[0], seconds)


# ------------------------------------------------------------------ one run


def _load(wrk: str, server: _Server, work: Work, load: Load, seconds: int) -> WrkResult:
    body = json.dumps({"input": work.input}).encode()
    result = run_wrk(wrk, f"{server.url}/v1/requests", body, server.token or None,
                     threads=load.threads, connections=load.connections, seconds=seconds)
    server.drain()
    return result


def _measure(wrk: str, server: _Server, work: Work, load: Load, seconds: int) -> dict[str, Any]:
    """One wrk run against ``server``, with the CPU its processes spent meanwhile."""
    before, machine = cpu_seconds(server.processes), psutil.cpu_times()
    started = time.perf_counter()
    result = _load(wrk, server, work, load, seconds)
    wall = time.perf_counter() - started
    spent = {name: cpu_seconds(server.processes)[name] - before[name] for name in before}
    busy = _busy_cores(machine, psutil.cpu_times(), wall)
    per_request = 1e6 / result.requests if result.requests else 0.0
    row: dict[str, Any] = {
        "server": server.name, "req/s": round(result.rate, 1),
        "p50 ms": round(result.p50_ms, 2), "p99 ms": round(result.p99_ms, 2),
        "errors": result.errors,
        "server CPU us/req": round(sum(spent.values()) * per_request, 1),
        "wrk CPU us/req": round(result.client_cpu_us, 1),
    }
    if server.name == PROJECT_O:
        row["supervisor us/req"] = round(spent["supervisor"] * per_request, 1)
        row["instances us/req"] = round(
            sum(v for k, v in spent.items() if k != "supervisor") * per_request, 1)
    utilisation = {name: cpu / wall for name, cpu in spent.items()}
    row["limited by"] = _limiter(utilisation, result, work, load, busy)
    return row


def _busy_cores(before: Any, after: Any, wall: float) -> float:
    """How many cores the whole machine kept busy over ``wall`` seconds (others included)."""
    idle = (after.idle - before.idle) + (getattr(after, "iowait", 0.0)
                                         - getattr(before, "iowait", 0.0))
    return max(0.0, (os.cpu_count() or 1) - float(idle) / wall)


def cpu_seconds(processes: dict[str, int]) -> dict[str, float]:
    """CPU seconds (user + system) each process has used so far (0 for one that is gone)."""
    seconds = {}
    for name, pid in processes.items():
        try:
            times = psutil.Process(pid).cpu_times()
            seconds[name] = times.user + times.system
        except psutil.Error:
            seconds[name] = 0.0
    return seconds


def _limiter(utilisation: dict[str, float], result: WrkResult, work: Work, load: Load,
             busy: float) -> str:
    """What held the figure back: the handler's wait, a process at a full core (a server's,
    or wrk's threads), every core.

    For a handler that waits, the overlap (requests/s x its wait, Little's
    law) says how many handlers ran at once: about the connections, the
    wait itself; about 1 for many connections, handlers served one at a time.
    """
    if work.wait_ms:
        overlap = result.rate * work.wait_ms / 1000
        if overlap >= 0.8 * load.connections:
            return (f"the handler's {work.wait_ms:g} ms wait ({overlap:.1f} requests waited "
                    f"at once, {load.connections} connections)")
        if overlap < 1.5 < load.connections:
            return (f"handlers served one at a time ({overlap:.1f} at once for "
                    f"{load.connections} connections)")
    busiest = max(utilisation, key=lambda name: utilisation[name])
    if utilisation[busiest] >= CPU_BOUND:
        return f"{busiest} CPU ({utilisation[busiest]:.0%} of a core)"
    client = result.client_cpu_s / max(result.seconds, 1e-9)
    if client / load.threads >= CPU_BOUND:  # the load generator itself: not a server figure
        return f"wrk CPU ({client / load.threads:.0%} of a core per thread)"
    cores = os.cpu_count() or 1
    if busy >= CPU_BOUND * cores:
        ours = sum(utilisation.values())
        others = max(0.0, busy - ours - client)
        return (f"all {cores} cores busy (server {ours:.2f}, wrk {client:.2f}, "
                f"other processes {others:.2f})")
    return (f"round trips (p50 {result.p50_ms:.2f} ms; busiest {busiest} "
            f"{utilisation[busiest]:.0%}, machine {busy:.1f} cores)")


# ------------------------------------------------------------------ figures


def _compare(report: Report, flavour: Flavour, work: Work, load: Load,
             plain: dict[str, Any], ours: dict[str, Any]) -> None:
    head = {"handler": work.name, "flavour": flavour.name, "connections": load.connections}
    throughput = ours["req/s"] / plain["req/s"] if plain["req/s"] else 0.0
    latency = ours["p50 ms"] / plain["p50 ms"] if plain["p50 ms"] else 0.0
    report.rows.append({**head, **plain})
    report.rows.append({**head, **ours, "req/s ratio": round(throughput, 3),
                        "p50 ratio": round(latency, 3)})
    what = f"{flavour.name} {work.name}, {load.connections} conn."
    if load.connections > 1:
        report.target(f"req/s {PROJECT_O} / plain, {what}", throughput,
                      f">= {THROUGHPUT_RATIO_GOAL:g}", throughput >= THROUGHPUT_RATIO_GOAL)
    if (load.connections > 1 and work.name == "100 ms I/O") or (
            load.connections == 1 and work.name == "1 ms CPU"):
        report.target(f"p50 {PROJECT_O} / plain, {what}", latency,
                      f"<= {LATENCY_RATIO_GOAL:g}", 0 < latency <= LATENCY_RATIO_GOAL)


def _with_dashboard(report: Report, wrk: str, stack: Stack, server: _Server, flavour: Flavour,
                    seconds: int, rounds: int) -> None:
    """The 1 ms load with a dashboard reading the live feed, alternated with none.

    without, with, without, with...: the medians of each compare the two
    under the same drift of a shared machine.
    """
    work, load = WORKS[1], LOADS[0]
    without: list[WrkResult] = []
    watched: list[WrkResult] = []
    messages = 0
    for _ in range(rounds):
        without.append(_load(wrk, server, work, load, seconds))
        with LiveReader(stack.url, stack.token) as reader:
            watched.append(_load(wrk, server, work, load, seconds))
        messages += reader.messages
    rate_without = float(np.median([r.rate for r in without]))
    rate_with = float(np.median([r.rate for r in watched]))
    ratio = rate_with / rate_without if rate_without else 0.0
    report.rows.append({
        "handler": work.name, "flavour": flavour.name, "connections": load.connections,
        "server": f"{PROJECT_O} + dashboard", "req/s": round(rate_with, 1),
        "p50 ms": round(float(np.median([r.p50_ms for r in watched])), 2),
        "p99 ms": round(float(np.median([r.p99_ms for r in watched])), 2),
        "errors": sum(r.errors for r in watched), "req/s ratio": round(ratio, 3),
        "live messages": messages, "rounds": rounds,
    })
    report.target(f"req/s with a dashboard watching / without, {flavour.name} (medians)", ratio,
                  f">= {DASHBOARD_RATIO_GOAL:g}", ratio >= DASHBOARD_RATIO_GOAL)


def _ceiling_target(report: Report, ceiling: dict[str, Any]) -> None:
    report.rows.append({"handler": "fixed reply", "flavour": "-", "connections":
                        LOADS[0].connections, **ceiling})
    fastest = max((row["req/s"] for row in report.rows
                   if row.get("server") in (PLAIN, PROJECT_O)), default=0.0)
    ratio = ceiling["req/s"] / fastest if fastest else 0.0
    report.target("load generator ceiling / fastest server figure", ratio,
                  f">= {CEILING_GOAL:g}", ratio >= CEILING_GOAL)


def _memory(report: Report, memory: dict[str, Any]) -> None:
    report.rows.append(memory)
    report.target("PSS supervisor + main + standby", memory["PSS MB"], f"<= {PSS_GOAL_MB:g} MB",
                  memory["PSS MB"] <= PSS_GOAL_MB)


def measure_memory(vault: Path) -> dict[str, Any]:
    """PSS of the stack serving the built-in assistant, after a few requests."""
    with Stack(vault, builtin_agent_path()) as stack:
        for fact in ("the sky is blue", "water boils at 100 degrees"):
            stack.ask(f"remember {fact}").raise_for_status()
        stack.ask("what colour is the sky?").raise_for_status()
        processes = _project_o(stack).processes
        sizes = {name: pss(pid) for name, pid in processes.items()}
        anon = [_anon_pss(pid) for name, pid in processes.items() if not name.startswith("zygote")]
    zygote = sum(size for name, size in sizes.items() if name.startswith("zygote"))
    counted = {name: size for name, size in sizes.items() if not name.startswith("zygote")}
    return {
        "handler": "assistant", "server": "memory",
        "PSS MB": round(sum(counted.values()) / MB, 1),
        "PSS anon MB": None if None in anon else round(sum(a or 0 for a in anon) / MB, 1),
        **{f"{role} PSS MB": round(value / MB, 1) for role, value in sorted(counted.items())},
        "zygote PSS MB (apart)": round(zygote / MB, 1),
    }


def _anon_pss(pid: int) -> int | None:
    """The anonymous part of a process's PSS in bytes; None where the kernel does not say.

    The file-backed rest (shared libraries) is split with every process on
    the machine that maps the same files, so it moves with what else runs.
    """
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as rollup:
            for line in rollup:
                if line.startswith("Pss_Anon:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _notes(report: Report, flavours: Sequence[Flavour]) -> None:
    missing = [f.name for f in FLAVOURS if f not in flavours]
    report.notes += [
        ("load: wrk (C, epoll) with a Lua script POSTing the JSON body with the bearer token; "
        "-t2 -c32, and -t1 -c1 (wrk needs a connection per thread); latency as wrk sees it; "
        "a 1 s warm-up per server is not counted; after each run the next waits until the "
        "supervisor answered what wrk left in flight"),
        ("CPU per request: user + system time of the server processes over the run (psutil; "
        "Project O: supervisor + zygote + instances, the standby included; plain: the uvicorn "
        "process) and of wrk (wait4), divided by the requests wrk completed"),
        ("plain = a FastAPI app on uvicorn (its defaults: uvloop and httptools when "
        "installed) calling the same handler function with a pydantic body and a token "
        "check; a sync handler runs in FastAPI's thread pool, so its I/O waits overlap"),
        ("limited by: for a handler that waits, how many handlers overlapped (req/s x wait, "
        "Little's law: about the connections, the wait; about 1, one at a time); else a "
        "server process or wrk's threads at >= 85 % of a core, or every core >= 85 % busy "
        "(the machine's own count: wrk and other processes included); else the round trips "
        "of a closed loop"),
        ("trivial = an asyncio protocol answering a fixed 200 to every request: how fast wrk "
        "can drive a Python server here; a figure far below it was not limited by wrk"),
        ("PSS counts shared pages split between sharers; the zygote (fork template of the "
        "instances, its other children) is not in the total and is shown apart; PSS anon is "
        "the anonymous part (the file-backed rest is split with every process on the machine "
        "mapping the same libraries, so it moves by a few MB with what else runs)"),
    ]
    if missing:
        report.notes.append(
            f"not measured: {', '.join(missing)} handlers (the agent API does not take them "
            "yet; FLAVOURS lists them, and they are measured once an agent answers)")

