"""``project-o bench isolation``: what the sandbox costs, and whether anything gets out.

::

    fork-to-ready   two zygotes of the built-in assistant, sandbox on and off, alive at
                    once; forks alternate between them in blocks, one at a time:
                    fork request -> hello -> restore -> first heartbeat (= ready)
    zygote start    spawn -> hello, on and off (the sandbox is entered here, once)
    restart         `bench recovery`'s measurement (kill -9 of the main under load ->
                    first good answer), 1 MB state, with and without the standby,
                    a supervisor with the sandbox and one with --no-sandbox, alternated
    probes          a hostile agent (bench/agents/hostile_agent.py) served with the
                    sandbox tries to read the token and /proc of the supervisor, write
                    the vault and the package, connect, signal, ptrace, unshare, mount,
                    fork 500 times, fill /tmp, and at import time the same: attempts
                    made / attempts that succeeded (goal 0)

Targets (docs/design.md, "Targets"): fork-to-ready and restart p99 with the
sandbox within 10 % of without it (measured in the same run); 0 probes succeed.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import numpy as np
import psutil

from project_o.bench import recovery
from project_o.bench.agents import HOSTILE_AGENT
from project_o.bench.agents.hostile_agent import TARGETS_FILE
from project_o.bench.report import Report
from project_o.bench.shadows import expect
from project_o.runtime.confine.policy import SandboxPolicy
from project_o.runtime.sandbox import scrubbed_env
from project_o.runtime.zygote_client import ZygoteHandle
from project_o.stack import Stack
from project_o.supervisor.options import builtin_agent_path
from project_o.wire import Message, MessageType, write_message_async

__all__ = ["run", "signal_succeeded"]

#: forks per arm (sandbox on / off)
FULL_FORKS: Final = 200
QUICK_FORKS: Final = 40
#: forks in a row on one arm before switching: both arms see the same load
BLOCK: Final = 10
#: zygote starts per arm
FULL_STARTS: Final = 5
QUICK_STARTS: Final = 2
#: the sandbox may cost this much at p99 (ratio on / off)
MAX_RATIO: Final = 1.10
STEP_TIMEOUT_S: Final = 60.0
MB: Final = 1_000_000

Progress = Callable[[str], None]


def run(quick: bool, progress: Progress) -> Report:
    """Fork-to-ready, zygote start and restart with the sandbox on and off; the probes."""
    report = Report(name="isolation", quick=quick)
    progress("fork-to-ready, sandbox on and off, alternating")
    forks = asyncio.run(_fork_to_ready(QUICK_FORKS if quick else FULL_FORKS,
                                       QUICK_STARTS if quick else FULL_STARTS))
    report.rows += forks["rows"]
    layers = forks["layers"]
    _ratio_target(report, "fork-to-ready p99, sandbox on / off", forks["rows"])
    restart_rows = _restarts(quick, progress)
    report.rows += restart_rows
    for standby in (True, False):
        label = "standby" if standby else "no standby"
        _ratio_target(report, f"restart p99 ({label}), sandbox on / off",
                      [r for r in restart_rows if r["what"].endswith(f"({label})")])
    progress("probes: a hostile agent tries to get out")
    attempts, succeeded, detail = _probes()
    report.rows.append({"what": "probes", "attempts": attempts, "succeeded": succeeded})
    report.target("probes that succeeded", succeeded, f"0 of {attempts}", succeeded == 0)
    report.notes.append(f"layers active on this machine: {', '.join(layers['active'])}; "
                        f"not applied: {layers['missing'] or 'none'}")
    report.notes += detail
    report.notes.append("fork-to-ready: one fork at a time, blocks of "
                        f"{BLOCK} alternating between the two zygotes; restart: "
                        "`bench recovery`'s kill -9 measurement at 1 MB (client-side, one "
                        "HTTP round trip included)")
    return report


# -- fork-to-ready ----------------------------------------------------------


async def _fork_to_ready(forks: int, starts: int) -> dict[str, Any]:
    arms = {"on": SandboxPolicy(), "off": SandboxPolicy(enabled=False)}
    start_s: dict[str, list[float]] = {arm: [] for arm in arms}
    for _ in range(starts):
        for arm, policy in arms.items():
            t0 = time.perf_counter()
            zygote = await _zygote(policy)
            start_s[arm].append((time.perf_counter() - t0) * 1000)
            await zygote.close()
    zygotes = {arm: await _zygote(policy) for arm, policy in arms.items()}
    layers = zygotes["on"].sandbox
    ready_ms: dict[str, list[float]] = {arm: [] for arm in arms}
    try:
        for block in range(forks // BLOCK):
            for arm in (("on", "off") if block % 2 == 0 else ("off", "on")):
                for _ in range(BLOCK):
                    ready_ms[arm].append(await _one_fork(zygotes[arm]))
    finally:
        for zygote in zygotes.values():
            await zygote.close()
    rows = [_row(f"fork-to-ready, sandbox {arm}", ready_ms[arm]) for arm in arms]
    rows += [_row(f"zygote start, sandbox {arm}", start_s[arm]) for arm in arms]
    return {"rows": rows, "layers": layers}


async def _zygote(policy: SandboxPolicy) -> ZygoteHandle:
    return await ZygoteHandle.start(builtin_agent_path(), "bench", env=scrubbed_env(),
                                    sandbox=policy)


async def _one_fork(zygote: ZygoteHandle) -> float:
    t0 = time.perf_counter()
    forked = await zygote.fork("shadow", f"bench-{time.monotonic_ns()}")
    await asyncio.wait_for(expect(forked, MessageType.HELLO), STEP_TIMEOUT_S)
    await write_message_async(forked.writer, Message(MessageType.RESTORE, {
        "checkpoint": None, "entries": [], "last_sequence": 0}))
    await asyncio.wait_for(expect(forked, MessageType.HEARTBEAT), STEP_TIMEOUT_S)
    elapsed = (time.perf_counter() - t0) * 1000
    await write_message_async(forked.writer, Message(MessageType.SHUTDOWN, {}))
    await asyncio.wait_for(asyncio.shield(forked.exited), STEP_TIMEOUT_S)
    forked.writer.close()
    return elapsed


# -- restart ----------------------------------------------------------------


def _restarts(quick: bool, progress: Progress) -> list[dict[str, Any]]:
    kills = 5 if quick else 20
    rows = []
    with tempfile.TemporaryDirectory(prefix="project-o-bench-isolation-") as tmp:
        for n, standby in enumerate((True, False)):
            config = recovery.Config(1 * MB, standby, kills)
            order = ("on", "off") if n % 2 == 0 else ("off", "on")
            for arm in order:
                progress(f"restart, {config.label}, sandbox {arm}: {kills} kills under load")
                extra = () if arm == "on" else ("--no-sandbox",)
                row = recovery.measure(config, Path(tmp) / f"vault-{n}-{arm}", extra)
                label = "standby" if standby else "no standby"
                rows.append({"what": f"restart, sandbox {arm} ({label})",
                             "n": row.get("kills"), "p50 ms": row.get("p50 ms"),
                             "p99 ms": row.get("p99 ms"), "lost": row.get("lost"),
                             **({"error": row["error"]} if "error" in row else {})})
    return rows


# -- probes -----------------------------------------------------------------


def _probes() -> tuple[int, int, list[str]]:
    with tempfile.TemporaryDirectory(prefix="project-o-bench-hostile-") as tmp:
        home = Path(tmp)
        agent, vault = home / "agent", home / "vault"
        agent.mkdir()
        shutil.copy(HOSTILE_AGENT, agent / "hostile_agent.py")
        port = _free_port()
        (agent / TARGETS_FILE).write_text(json.dumps(
            {"port": port, "read": [str(vault / "token"), str(vault / "catalog.sqlite")]}))
        with Stack(vault, agent / "hostile_agent.py", ["--port", str(port)]) as stack:
            return _probe_stack(stack, vault, port)


def _probe_stack(stack: Stack, vault: Path, port: int) -> tuple[int, int, list[str]]:
    import project_o

    supervisor = stack.supervisor_pid()
    probes: list[dict[str, Any]] = [
        {"probe": "read", "paths": [str(vault / "token"), f"/proc/{supervisor}/environ",
                                     f"/proc/{supervisor}/mem"]},
        {"probe": "open_write", "paths": [*map(str, (vault / "wal").glob("*.wal")),
                                           str(vault / "catalog.sqlite")]},
        {"probe": "create", "dirs": [str(Path(project_o.__file__).parent),
                                     os.path.expanduser("~"), str(vault)]},
        {"probe": "connect", "ports": [port]},
        {"probe": "signal", "pids": [supervisor]},
        {"probe": "syscalls", "pid": 1},
        {"probe": "fork_bomb", "count": 500, "reap": True},
        {"probe": "fill_tmp", "limit_bytes": 1 << 30},
    ]
    zygote = psutil.Process(stack.pids()["main"]).ppid()  # the main answers the probes
    attempts = succeeded = 0
    notes = []
    for probe in probes:
        answer = stack.ask({"do": "probe", **probe})
        if answer.status_code != 200:
            raise RuntimeError(f"probe {probe['probe']}: HTTP {answer.status_code}: "
                               f"{answer.text[:500]}")
        output = answer.json()["output"]
        won = output["succeeded"]
        if probe["probe"] == "signal":
            won = signal_succeeded(output, _running(zygote))
        attempts, succeeded = attempts + output["attempts"], succeeded + won
        if won:
            notes.append(f"probe {probe['probe']} SUCCEEDED: {output['detail']}")
    seen = stack.ask({"do": "import_probes"}).json()["output"]
    at_import = [v for k, v in seen.items() if k in ("unshare", "connect") or
                 k.startswith("read ")]
    attempts += len(at_import)
    succeeded += sum(1 for ok, _ in at_import if ok)
    if stack.supervisor_pid() != supervisor:
        succeeded += 1
        notes.append("the supervisor was replaced during the probes")
    return attempts, succeeded, notes


def signal_succeeded(output: dict[str, Any], zygote_alive: bool) -> int:
    """The signal probe's successes, its parent's counted only if that parent died.

    The last attempt is a SIGKILL of its parent, the zygote: process 1 of its
    PID namespace, which drops the signal although kill() says success.
    """
    parent_said_yes = output["detail"][-1].startswith("succeeded")
    won: int = output["succeeded"]
    return won - 1 if parent_said_yes and zygote_alive else won


def _running(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# -- figures ----------------------------------------------------------------


def _row(what: str, values: list[float]) -> dict[str, Any]:
    return {"what": what, "n": len(values),
            "p50 ms": round(float(np.percentile(values, 50)), 2),
            "p99 ms": round(float(np.percentile(values, 99)), 2)}


def _ratio_target(report: Report, name: str, rows: list[dict[str, Any]]) -> None:
    on = next((r for r in rows if "sandbox on" in r["what"]), None)
    off = next((r for r in rows if "sandbox off" in r["what"]), None)
    if on is None or off is None or not on.get("p99 ms") or not off.get("p99 ms"):
        report.target(name, float("nan"), f"<= {MAX_RATIO:.2f}", False)
        return
    ratio = on["p99 ms"] / off["p99 ms"]
    report.target(name, round(ratio, 3), f"<= {MAX_RATIO:.2f}", ratio <= MAX_RATIO)
