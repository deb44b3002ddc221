"""``project-o bench overhead``: what the supervisor costs per request, and in memory.

::

    client threads (httpx keep-alive, CLIENTS of them, closed loop)
       │                                         │
       ▼ POST /v1/requests                       ▼ POST /v1/requests
    supervised: gateway + supervisor            direct: one uvicorn/FastAPI process
       │ unix socket (msgpack frames)            │ (this module run with --serve)
       ▼                                         ▼
    main instance: handler(ctx, input)         handler(ctx, input), in-process,
                                               one request at a time (an instance
                                               also serves one at a time)

Both serve agents/work_agent.py, which busy-waits 0 or 1 ms, in the same
run, alternately. Throughput ratio = supervised / direct requests per
second; latency p50/p99 as the client sees it. Target
(docs/design.md, "Targets"): ratio >= 0.9 with the 1 ms handler.

Memory: PSS (proportional set size: shared pages split between the
processes that share them) of supervisor + main + standby serving the
built-in assistant, target <= 100 MB. The zygote is reported apart: it is
the fork template the instances share pages with, so its PSS is the part
of those shared pages charged to it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

import httpx
import numpy as np
import psutil
import uvicorn
from fastapi import FastAPI, Request

from project_o.bench.agents import WORK_AGENT
from project_o.bench.report import Report
from project_o.dashboard.client import LiveReader
from project_o.runtime.loader import load_agent
from project_o.stack import Stack, start_process, stop_process
from project_o.supervisor.options import builtin_agent_path

__all__ = ["measure_load", "measure_memory", "run", "run_with", "serve_direct"]

MB = 1_000_000
#: concurrent client threads: enough to keep one serial server busy
CLIENTS = 8
#: seconds of load per measurement (after WARMUP_S); quick runs are shorter
FULL_SECONDS = 5.0
QUICK_SECONDS = 1.5
WARMUP_S = 0.5
#: handler work in milliseconds
HANDLER_MS = (0, 1)
#: throughput and memory targets (docs/design.md, "Targets")
THROUGHPUT_RATIO_GOAL = 0.9
PSS_GOAL_MB = 100.0
#: a dashboard watching may cost the agent at most 5 % of its throughput
DASHBOARD_RATIO_GOAL = 0.95
_READY_TIMEOUT_S = 30.0


def run(quick: bool, progress: Callable[[str], None]) -> Report:
    """Compare supervised and direct serving; measure the stack's PSS."""
    return run_with(QUICK_SECONDS if quick else FULL_SECONDS, quick, progress)


def run_with(seconds: float, quick: bool, progress: Callable[[str], None]) -> Report:
    """The benchmark with ``seconds`` of load per measurement (the smoke test's knob)."""
    report = Report(name="overhead", quick=quick)
    with tempfile.TemporaryDirectory(prefix="project-o-bench-overhead-") as tmp:
        root = Path(tmp)
        with Stack(root / "vault", WORK_AGENT) as stack, _Direct(WORK_AGENT, root) as direct:
            for ms in HANDLER_MS:
                progress(f"{ms} ms handler: direct, then supervised, {seconds:g} s each")
                direct_row = measure_load(direct.url, {}, ms, seconds)
                supervised_row = measure_load(stack.url, _auth(stack), ms, seconds)
                _compare(report, ms, direct_row, supervised_row)
                if ms == max(HANDLER_MS):
                    progress(f"{ms} ms handler: supervised with a dashboard watching")
                    _with_dashboard(report, stack, ms, seconds, supervised_row,
                                    rounds=2 if quick else 3)
        progress("memory of the stack serving the built-in assistant")
        memory = measure_memory(root / "vault-assistant")
    report.rows.append(memory)
    report.target("PSS supervisor + main + standby", memory["PSS MB"], f"<= {PSS_GOAL_MB:g} MB",
                  memory["PSS MB"] <= PSS_GOAL_MB)
    _notes(report)
    return report


def _auth(stack: Stack) -> dict[str, str]:
    return {"Authorization": f"Bearer {stack.token}"}


def _compare(report: Report, ms: int, direct: dict[str, Any], supervised: dict[str, Any]) -> None:
    ratio = supervised["req/s"] / direct["req/s"] if direct["req/s"] else 0.0
    report.rows.append({"handler": f"{ms} ms", "served": "direct", **direct})
    report.rows.append({"handler": f"{ms} ms", "served": "supervised", **supervised,
                        "throughput ratio": round(ratio, 3)})
    if ms == 1:
        report.target("throughput supervised / direct, 1 ms handler", ratio,
                      f">= {THROUGHPUT_RATIO_GOAL:g}", ratio >= THROUGHPUT_RATIO_GOAL)


def _with_dashboard(report: Report, stack: Stack, ms: int, seconds: float,
                    alone: dict[str, Any], rounds: int) -> None:
    """The same load with a dashboard reading the live feed, alternated with none.

    without, with, without, with...: the medians of each compare the two
    under the same drift of a shared machine.
    """
    without, watched, messages = [alone], [], 0
    for turn in range(rounds):
        with LiveReader(stack.url, stack.token) as reader:
            watched.append(measure_load(stack.url, _auth(stack), ms, seconds))
        messages += reader.messages
        if turn < rounds - 1:
            without.append(measure_load(stack.url, _auth(stack), ms, seconds))
    rate_without = float(np.median([row["req/s"] for row in without]))
    rate_with = float(np.median([row["req/s"] for row in watched]))
    ratio = rate_with / rate_without if rate_without else 0.0
    report.rows.append({"handler": f"{ms} ms", "served": "supervised + dashboard",
                        "req/s": round(rate_with, 1),
                        "p50 ms": float(np.median([r["p50 ms"] for r in watched])),
                        "p99 ms": float(np.median([r["p99 ms"] for r in watched])),
                        "failed": sum(r["failed"] for r in watched),
                        "throughput ratio": round(ratio, 3), "live messages": messages,
                        "rounds": rounds})
    report.target("throughput with a dashboard connected / without (medians)", ratio,
                  f">= {DASHBOARD_RATIO_GOAL:g}", ratio >= DASHBOARD_RATIO_GOAL)


def measure_load(url: str, headers: dict[str, str], ms: int, seconds: float) -> dict[str, Any]:
    """Closed-loop load from CLIENTS threads: req/s and latency percentiles."""
    body = {"input": {"ms": ms}}
    latencies: list[list[float]] = [[] for _ in range(CLIENTS)]
    failures = [0] * CLIENTS
    start = time.perf_counter() + WARMUP_S
    end = start + seconds

    def client(n: int) -> None:
        with httpx.Client(base_url=url, headers=headers, timeout=30.0) as http:
            while (now := time.perf_counter()) < end:
                response = http.post("/v1/requests", json=body)
                if now >= start:  # the warm-up's answers are not counted
                    latencies[n].append(time.perf_counter() - now)
                    failures[n] += response.status_code != 200

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done = np.array([x for per in latencies for x in per]) * 1000
    return {
        "req/s": round(len(done) / seconds, 1),
        "p50 ms": round(float(np.percentile(done, 50)), 2),
        "p99 ms": round(float(np.percentile(done, 99)), 2),
        "failed": sum(failures),
    }


def measure_memory(vault: Path) -> dict[str, Any]:
    """PSS of the stack serving the built-in assistant, after a few requests."""
    with Stack(vault, builtin_agent_path()) as stack:
        for fact in ("the sky is blue", "water boils at 100 degrees"):
            stack.ask(f"remember {fact}").raise_for_status()
        stack.ask("what colour is the sky?").raise_for_status()
        pids = stack.pids()
        supervisor = psutil.Process(stack.supervisor_pid())
        instances = set(pids.values())
        others = [p.pid for p in supervisor.children(recursive=True) if p.pid not in instances]
        pss = {role: _pss(pid) for role, pid in pids.items()}
        pss["supervisor"] = _pss(supervisor.pid)
        zygote = sum(_pss(pid) for pid in others)
    return {
        "handler": "assistant", "served": "memory",
        "PSS MB": round(sum(pss.values()) / MB, 1),
        **{f"{role} PSS MB": round(value / MB, 1) for role, value in sorted(pss.items())},
        "zygote PSS MB (apart)": round(zygote / MB, 1),
    }


def _pss(pid: int) -> int:
    return int(psutil.Process(pid).memory_full_info().pss)


def _notes(report: Report) -> None:
    report.notes.append(
        f"{CLIENTS} client threads in the benchmark process, httpx keep-alive, closed loop; "
        f"{WARMUP_S:g} s warm-up not counted; both servers run on this machine with the client"
    )
    report.notes.append(
        "direct = uvicorn + FastAPI in one process calling the handler inline (serially, as "
        "an instance does), through the agent's test client (the same MessagePack round trip)"
    )
    report.notes.append(
        "supervised = gateway + supervisor + main instance over a unix socket, warm standby "
        "running; the handler busy-waits (a sleep would let a threaded server overlap)"
    )
    report.notes.append(
        "supervised + dashboard = the same load with one dashboard session reading the live "
        "WebSocket feed (its sampler running), alternated with runs without; medians compared"
    )
    report.notes.append(
        "PSS counts shared pages split between sharers; the zygote (fork template of the "
        "instances, its other children) is not in the total and is shown apart"
    )


class _Direct:
    """The same agent served by one plain process (this module with ``--serve``)."""

    def __init__(self, agent: Path, root: Path) -> None:
        self._port_file = root / "direct.port"
        argv = [sys.executable, "-m", "project_o.bench.overhead", "--serve", str(agent),
                "--port-file", str(self._port_file)]
        self.process = start_process(argv, root / "direct.log", env=dict(os.environ))
        self.url = ""

    def __enter__(self) -> Self:
        try:
            self._wait()
        except BaseException:
            stop_process(self.process, grace_s=5.0)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        stop_process(self.process, grace_s=5.0)

    def _wait(self) -> None:
        deadline = time.monotonic() + _READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("the direct server exited early; see direct.log")
            with contextlib.suppress(OSError, ValueError, httpx.HTTPError):
                self.url = f"http://127.0.0.1:{int(self._port_file.read_text())}"
                if httpx.get(f"{self.url}/healthz", timeout=1.0).is_success:
                    return
            time.sleep(0.02)
        raise TimeoutError(f"the direct server was not ready within {_READY_TIMEOUT_S:g} s")


def serve_direct(agent_path: Path, port_file: Path) -> None:
    """Serve ``agent_path`` on a free 127.0.0.1 port; write the port to ``port_file``."""
    client = load_agent(agent_path).test_client()
    app = FastAPI()

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/requests")
    async def submit(request: Request) -> dict[str, Any]:
        # async and inline: one request at a time, like an instance's loop
        started = time.perf_counter()
        payload = await request.json()
        output = client.call(payload["input"])
        return {"request_id": "direct", "output": output, "version": "direct",
                "latency_ms": (time.perf_counter() - started) * 1000}

    # IPPROTO_TCP spelled out: asyncio sets TCP_NODELAY only on sockets whose proto
    # says TCP, and without it Nagle + delayed ACK add 40 ms to each answer
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    # temp + rename: the parent never reads half a number
    tmp = port_file.with_suffix(".tmp")
    tmp.write_text(str(sock.getsockname()[1]))
    os.replace(tmp, port_file)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    server.run(sockets=[sock])


def _main() -> None:
    parser = argparse.ArgumentParser(description="serve an agent directly (the baseline)")
    parser.add_argument("--serve", type=Path, required=True)
    parser.add_argument("--port-file", type=Path, required=True)
    args = parser.parse_args()
    serve_direct(args.serve, args.port_file)


if __name__ == "__main__":
    _main()
