"""``project-o bench recovery``: how long the agent is gone after ``kill -9``.

::

    Stack (supervisor + zygote + main [+ warm standby]) serving agents/state_agent.py
      1. fill     one request writes 1000 values (= CHECKPOINT_EVERY, so the
                  instance checkpoints right after): 1 MB, 10 MB, 100 MB of state
      2. load     a client thread sends {"do": "check"} back to back; every answer
                  carries the answering pid and a digest of the whole state
      3. kill     every KILL_INTERVAL_S: SIGKILL the main (pid from /v1/status)
                    t_kill ──────────────► first 200 answered by another pid
                           recovery time     whose digest equals the expected one
      4. count    answers that were not 200 (lost) and digests that differ (forgotten)

Configurations: each state size with the warm standby (it tails the WAL and
is promoted) and with ``--no-standby`` (a fresh instance is forked from the
zygote and restored from checkpoint + WAL). The times are seen by the
client, so they include one HTTP round trip through the gateway.
Targets (docs/design.md, "Targets"): p99 <= 5 ms with the standby at every
size; p99 <= 50 ms without it at 10 MB; no request lost.
"""

from __future__ import annotations

import os
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from project_o.bench.agents import STATE_AGENT
from project_o.bench.agents.state_agent import expected_digest
from project_o.bench.report import Report
from project_o.runtime.confine.pids import inner_pid
from project_o.stack import Stack

__all__ = ["Config", "configs", "measure", "run", "run_configs"]

MB = 1_000_000
#: values per fill: the instance's default CHECKPOINT_EVERY, so the fill's
#: last write triggers a checkpoint that covers the whole state
FILL_WRITES = 1000
#: restart intensity allows 10 restarts in 10 s; one kill per 1.2 s stays
#: under it, so every kill is measured without the escalation back-off
KILL_INTERVAL_S = 1.2
#: a recovery slower than this is reported as a failure of the configuration
RECOVERY_TIMEOUT_S = 15.0
#: how long to wait for a fresh standby (or main) before the next kill
SETTLE_TIMEOUT_S = 30.0
#: address-space quota for the largest state (the default is 1 GiB)
LARGE_STATE_MEMORY_MB = 4096
_SEED = 7
_POLL_S = 0.005
#: takeover targets (docs/design.md, "Targets")
STANDBY_P99_GOAL_MS = 5.0
COLD_P99_GOAL_MS = 50.0
COLD_GOAL_SIZE = 10 * MB


@dataclass(frozen=True)
class Config:
    """One measured configuration."""

    size: int
    standby: bool
    kills: int

    @property
    def label(self) -> str:
        """e.g. ``10 MB, standby``."""
        return f"{self.size / MB:g} MB, {'standby' if self.standby else 'no standby'}"


_FULL_KILLS = 20
_QUICK_KILLS = 5


def configs(quick: bool) -> list[Config]:
    """The configurations of a full or ``--quick`` run."""
    sizes = (1 * MB, 10 * MB) if quick else (1 * MB, 10 * MB, 100 * MB)
    kills = _QUICK_KILLS if quick else _FULL_KILLS
    return [Config(size, standby, kills) for size in sizes for standby in (True, False)]


def run(quick: bool, progress: Callable[[str], None]) -> Report:
    """Kill the main repeatedly under load; report recovery p50/p99 per configuration."""
    return run_configs(configs(quick), quick, progress)


def run_configs(todo: list[Config], quick: bool, progress: Callable[[str], None]) -> Report:
    """Measure ``todo`` (the smoke test passes a tiny list)."""
    report = Report(name="recovery", quick=quick)
    with tempfile.TemporaryDirectory(prefix="project-o-bench-recovery-") as tmp:
        for n, config in enumerate(todo):
            progress(f"{config.label}: fill, then {config.kills} kills under load")
            row = measure(config, Path(tmp) / f"vault-{n}")
            failure = row.pop("first failure", None)
            if failure:  # too long for a table cell
                report.notes.append(f"{config.label}: first failed request: {failure}")
            report.rows.append(row)
            _targets(report, config, row)
    _notes(report)
    return report


def measure(config: Config, vault: Path, extra_args: tuple[str, ...] = ()) -> dict[str, Any]:
    """One configuration's row: recovery times, lost requests, wrong states.

    ``extra_args`` go to the supervisor (``bench isolation`` adds ``--no-sandbox``).
    """
    row: dict[str, Any] = {"config": config.label}
    with Stack(vault, STATE_AGENT, [*_args(config), *extra_args]) as stack:
        expected = _fill(stack, config.size)
        row["checkpointed"] = _checkpoint_covers(stack)
        load = _Load(stack, expected["digest"])
        load.start()
        times: list[float] = []
        try:
            for _ in range(config.kills):
                _settle(stack, config.standby)
                times.append(_kill_and_wait(stack, load))
                time.sleep(KILL_INTERVAL_S)
        except (TimeoutError, RuntimeError, httpx.HTTPError) as exc:
            row["error"] = f"{type(exc).__name__}: {exc}"[:300]
        finally:
            load.stop()
    row.update(_summary(times, load))
    return row


def _args(config: Config) -> list[str]:
    args = [] if config.standby else ["--no-standby"]
    if config.size >= 100 * MB:
        # the state travels in one checkpoint frame: allow it
        args += ["--memory-limit-mb", str(LARGE_STATE_MEMORY_MB), "--max-frame-mb", "512"]
    return args


def _fill(stack: Stack, size: int) -> dict[str, Any]:
    value_size = size // FILL_WRITES
    response = stack.ask({"do": "fill", "count": FILL_WRITES, "size": value_size, "seed": _SEED})
    response.raise_for_status()
    expected = expected_digest(FILL_WRITES, value_size, _SEED)
    answer = stack.ask({"do": "check"}).json()["output"]
    if answer["digest"] != expected["digest"]:
        raise RuntimeError(f"after the fill the agent reports {answer}, expected {expected}")
    return expected


def _checkpoint_covers(stack: Stack) -> bool:
    """Whether the last checkpoint includes the fill's last write (waits a little)."""
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        vault = stack.status()["vault"]
        checkpoint = vault.get("last_checkpoint") or {}
        if checkpoint.get("last_sequence", -1) >= FILL_WRITES:
            return True
        time.sleep(0.05)
    return False


def _settle(stack: Stack, standby: bool) -> None:
    """Wait until a main (and, if configured, a restored standby) is up."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while time.monotonic() < deadline:
        roles = stack.pids()
        if "main" in roles and (not standby or "standby" in roles):
            return
        time.sleep(0.02)
    raise TimeoutError(f"no {'standby' if standby else 'main'} came up within "
                       f"{SETTLE_TIMEOUT_S:g} s (instances: {stack.pids()})")


def _kill_and_wait(stack: Stack, load: _Load) -> float:
    """SIGKILL the main; return ms until a good answer from another instance."""
    victim = stack.pids()["main"]
    seen_as = inner_pid(victim)  # the pid the agent answers with (its PID namespace's)
    mark = len(load.answers)
    killed_at = time.perf_counter()
    os.kill(victim, signal.SIGKILL)
    deadline = killed_at + RECOVERY_TIMEOUT_S
    while time.perf_counter() < deadline:
        for done_at, status, pid, good in load.answers[mark:]:
            if status == 200 and good and pid != seen_as and done_at > killed_at:
                return (done_at - killed_at) * 1000
        time.sleep(_POLL_S)
    raise TimeoutError(f"no good answer within {RECOVERY_TIMEOUT_S:g} s after killing "
                       f"pid {victim}")


@dataclass
class _Load:
    """A client thread sending ``check`` requests back to back."""

    stack: Stack
    digest: str
    #: (perf_counter at the answer, HTTP status or -1, pid, digest matched);
    #: appended by one thread, read by another: list.append is atomic
    answers: list[tuple[float, int, int, bool]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="recovery-load", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=RECOVERY_TIMEOUT_S)

    def _loop(self) -> None:
        with self.stack.client(timeout=RECOVERY_TIMEOUT_S * 2) as client:
            while not self._stop.is_set():
                self.answers.append(self._one(client))

    def _one(self, client: httpx.Client) -> tuple[float, int, int, bool]:
        try:
            response = client.post("/v1/requests", json={"input": {"do": "check"}})
        except httpx.HTTPError as exc:
            self.errors.append(f"{type(exc).__name__}: {exc}")
            return time.perf_counter(), -1, 0, False
        done_at = time.perf_counter()
        if response.status_code != 200:
            self.errors.append(f"{response.status_code}: {response.text[:200]}")
            return done_at, response.status_code, 0, False
        output = response.json()["output"]
        return done_at, 200, int(output["pid"]), output["digest"] == self.digest


def _summary(times: list[float], load: _Load) -> dict[str, Any]:
    answered = [a for a in load.answers if a[1] == 200]
    summary: dict[str, Any] = {
        "kills": len(times),
        "p50 ms": round(float(np.percentile(times, 50)), 2) if times else None,
        "p99 ms": round(float(np.percentile(times, 99)), 2) if times else None,
        "max ms": round(max(times), 2) if times else None,
        "requests": len(load.answers),
        "lost": len(load.answers) - len(answered),
        "wrong state": sum(1 for a in answered if not a[3]),
    }
    if load.errors:
        summary["first failure"] = load.errors[0][:200]
    return summary


def _targets(report: Report, config: Config, row: dict[str, Any]) -> None:
    p99 = row["p99 ms"]
    failed = p99 is None or "error" in row or row["kills"] < config.kills
    measured = float("nan") if p99 is None else p99
    if config.standby:
        report.target(f"recovery p99 with standby, {config.size / MB:g} MB", measured,
                      f"<= {STANDBY_P99_GOAL_MS:g} ms",
                      not failed and measured <= STANDBY_P99_GOAL_MS)
    elif config.size == COLD_GOAL_SIZE:
        report.target(f"recovery p99 without standby, {config.size / MB:g} MB", measured,
                      f"<= {COLD_P99_GOAL_MS:g} ms", not failed and measured <= COLD_P99_GOAL_MS)
    report.target(f"requests lost, {config.label}", row["lost"], "0",
                  row["lost"] == 0 and row["wrong state"] == 0)


def _notes(report: Report) -> None:
    report.notes.append(
        "recovery = SIGKILL of the main -> first 200 answer at the client from another pid "
        "whose whole-state digest matches (one HTTP round trip included)"
    )
    report.notes.append(
        f"state built by {FILL_WRITES} fsynced memory writes of size/{FILL_WRITES} bytes; "
        "'checkpointed' says whether a checkpoint covered all of it before the kills"
    )
    report.notes.append(
        f"one client thread, back-to-back requests; kills {KILL_INTERVAL_S:g} s apart "
        "(below the restart-intensity limit of 10 in 10 s); lost = non-200 answers; "
        "wrong state = 200 answers whose digest differs"
    )
