"""Evaluation backends: run a task's ``evaluate(agent)`` on candidates, each in its own sandbox.

::

    caller (GA, arbiter) ── backend.evaluate(genomes, task_path, timeout_s=, memory_mb=)
                                 │ one fresh child per genome, at most ``workers`` at once
                                 ▼
    SubprocessBackend:  genome.write_to(tmp/agent)        (the parent writes; trusted code)
                        posix_spawn python -m project_o.evolution.backends CHILD ARGS
                           stdin /dev/null, stdout+stderr -> tmp/output.log (tail kept)
                           env: scrubbed_env()            no secrets reach the candidate
                        child, before any candidate code runs: apply_sandbox()
                           setsid (own process group), PR_SET_PDEATHSIG, fds closed,
                           RLIMIT_AS = memory_mb, RLIMIT_CPU, RLIMIT_FSIZE, no core files
                        child: import task, load agent, task.evaluate(agent.test_client(params))
                           ──► tmp/result.json  {"metrics": {...}} | {"failure": {...}}
                        parent: pidfd + select until exit or deadline
                           deadline ──► killpg(SIGKILL) ──► failure "hang"
                           os.wait4 ──► exit status + peak RSS (ru_maxrss of the child)
                                 ▼
    [Evaluation(genome_id, metrics | None, failure | None, wall_s, peak_rss)]   input order

A failure is ``{kind, detail, traceback, last_output}`` with ``kind`` one of
:data:`FAILURE_KINDS`: ``exception`` (evaluate raised; the traceback is the
child's), ``crash`` (exited without a result), ``signal`` (killed by a
signal: segfault, SIGXCPU, an OOM kill), ``hang`` (past ``timeout_s``; the
whole process group was killed) and ``gamed`` (metrics that would fool a
selector: no finite ``score``, NaN or infinite values, a score outside the
task's ``SCORE_RANGE``). One candidate's fate never touches another's result.

Durability stays with the caller: a backend returns results and writes
nothing but its temporary directories. Any pool that satisfies
:class:`EvaluationBackend` (a zygote-based one, :mod:`.ray_backend`) can
stand in for :class:`SubprocessBackend`.

Threat model: the sandbox contains accidents and runaway code (crash,
hang, memory bomb, output flood, score gaming through returned values).
The task and the candidate share the child process, so candidate code that
deliberately forges the result file is out of scope here.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import math
import os
import select
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final, Protocol, Self, runtime_checkable

from project_o.errors import InvalidArgument
from project_o.evolution.genome import Genome
from project_o.runtime.sandbox import Limits, apply_sandbox, scrubbed_env, with_package_path

__all__ = [
    "DEFAULT_MEMORY_MB",
    "DEFAULT_TIMEOUT_S",
    "FAILURE_KINDS",
    "LAST_OUTPUT_BYTES",
    "Evaluation",
    "EvaluationBackend",
    "SubprocessBackend",
    "check_metrics",
    "failure",
    "load_task",
]

#: the kinds of failure an evaluation can end in (see the module docstring)
FAILURE_KINDS: Final = ("crash", "hang", "signal", "exception", "gamed")
#: a task evaluation of a small agent takes well under a second; ten is generous
DEFAULT_TIMEOUT_S: Final = 10.0
#: address space per candidate: an interpreter with numpy mapped needs ~300 MB of it
DEFAULT_MEMORY_MB: Final = 1024
#: how much of a candidate's stdout/stderr a failure keeps (the end is what explains it)
LAST_OUTPUT_BYTES: Final = 4096
#: largest file a candidate may write (its log included): stops an output flood
CHILD_FILE_SIZE: Final = 64 * 1024 * 1024
#: RLIMIT_CPU sits this far above the wall timeout: a backstop if the parent vanished
CPU_MARGIN_S: Final = 2
#: how long the parent sleeps in select() at most, so a missing pidfd still gets polled
_POLL_S: Final = 0.05
_MODULE: Final = "project_o.evolution.backends"


@dataclass(frozen=True)
class Evaluation:
    """The outcome of one candidate: metrics, or a failure saying why not."""

    genome_id: str
    metrics: dict[str, Any] | None
    failure: dict[str, Any] | None
    wall_s: float
    peak_rss: int  # bytes, the child's maximum resident set size

    @property
    def ok(self) -> bool:
        """Whether the candidate produced usable metrics."""
        return self.failure is None and self.metrics is not None

    @property
    def kind(self) -> str:
        """``"ok"`` or the failure kind."""
        return "ok" if self.failure is None else str(self.failure.get("kind"))

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON-able), for the catalog or across processes."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Evaluation:
        """Inverse of :meth:`to_dict`."""
        return cls(str(data["genome_id"]), data.get("metrics"), data.get("failure"),
                   float(data["wall_s"]), int(data["peak_rss"]))


@runtime_checkable
class EvaluationBackend(Protocol):
    """Evaluates candidates in sandboxes; results come back in input order."""

    def evaluate(self, genomes: Sequence[Genome], task_path: Path, *, timeout_s: float,
                 memory_mb: int) -> list[Evaluation]:
        """One :class:`Evaluation` per genome, in the order given."""
        ...

    def close(self) -> None:
        """Release workers, clusters, temporary files."""
        ...


def failure(kind: str, detail: str, *, traceback: str = "",
            last_output: str = "") -> dict[str, Any]:
    """A failure record (``kind`` must be one of :data:`FAILURE_KINDS`)."""
    if kind not in FAILURE_KINDS:
        raise InvalidArgument(f"failure kind must be one of {FAILURE_KINDS}, got {kind!r}")
    return {"kind": kind, "detail": detail, "traceback": traceback, "last_output": last_output}


def check_metrics(metrics: object, score_range: Sequence[float] | None = None) -> str | None:
    """Why ``metrics`` would fool a selector, or ``None`` if they are sound.

    Sound: a dict with string keys, a finite number ``score`` within
    ``score_range`` (inclusive) when one is given, and every other number finite.
    """
    if not isinstance(metrics, dict) or not all(isinstance(k, str) for k in metrics):
        return f"evaluate() must return a dict of metrics, got {type(metrics).__name__}"
    score = metrics.get("score")
    if isinstance(score, bool) or not isinstance(score, int | float):
        return f"metrics need a numeric 'score', got {score!r}"
    for name, value in metrics.items():
        if isinstance(value, float) and not math.isfinite(value):
            return f"metric {name!r} is {value!r}, not a finite number"
    if score_range is not None:
        low, high = score_range
        if not low <= score <= high:
            return f"score {score!r} is outside the task's SCORE_RANGE [{low}, {high}]"
    return None


class SubprocessBackend:
    """Each candidate in a fresh sandboxed interpreter; ``workers`` run at once."""

    def __init__(self, workers: int | None = None, *, python: str = sys.executable,
                 env: Mapping[str, str] | None = None) -> None:
        self.workers = max(1, workers or os.cpu_count() or 1)
        self._python = python
        self._env = with_package_path(scrubbed_env() if env is None else env)
        self._closed = False

    def evaluate(self, genomes: Sequence[Genome], task_path: Path, *,
                 timeout_s: float = DEFAULT_TIMEOUT_S,
                 memory_mb: int = DEFAULT_MEMORY_MB) -> list[Evaluation]:
        """Evaluate ``genomes`` against the task file; see the module docstring."""
        if self._closed:
            raise InvalidArgument("this backend was closed; make a new one")
        task = Path(task_path).resolve()
        if not task.is_file():
            raise InvalidArgument(f"expected a task file with evaluate(agent), {task} is missing")
        if timeout_s <= 0 or memory_mb <= 0:
            raise InvalidArgument(f"timeout_s and memory_mb must be > 0, got "
                                  f"{timeout_s} and {memory_mb}")
        with tempfile.TemporaryDirectory(prefix="project-o-eval-") as scratch:
            runs = [_Run(g, Path(scratch) / f"{i:05d}", task, timeout_s, memory_mb)
                    for i, g in enumerate(genomes)]
            self._drive(runs)
            return [run.result() for run in runs]

    def _drive(self, runs: list[_Run]) -> None:
        waiting, running = list(reversed(runs)), list[_Run]()
        try:
            while waiting or running:
                while waiting and len(running) < self.workers:
                    run = waiting.pop()
                    run.start(self._python, self._env)
                    running.append(run)
                _wait_some(running)
                running = [run for run in running if not run.finish_if_done()]
        finally:
            for run in running:  # interrupted: leave nothing behind
                if run.status is None:
                    run.abandon()

    def close(self) -> None:
        """Nothing to release (children never outlive :meth:`evaluate`); idempotent."""
        self._closed = True

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _Run:
    """One candidate's child process, from spawn to Evaluation."""

    def __init__(self, genome: Genome, home: Path, task: Path, timeout_s: float,
                 memory_mb: int) -> None:
        self.genome, self.home, self.task = genome, home, task
        self.timeout_s, self.memory_mb = timeout_s, memory_mb
        self.pid = -1
        self.pidfd: int | None = None
        self.started = self.deadline = 0.0
        self.status: tuple[int, int] | None = None  # (wait status, ru_maxrss in KiB)
        self.timed_out = False
        self.wall_s = 0.0

    def start(self, python: str, env: Mapping[str, str]) -> None:
        agent = self.genome.write_to(self.home / "agent")
        limits = Limits(memory_bytes=self.memory_mb << 20,
                        cpu_seconds=math.ceil(self.timeout_s) + CPU_MARGIN_S,
                        file_size=CHILD_FILE_SIZE, pids=None)
        argv = [python, "-m", _MODULE, "--agent", str(agent), "--task", str(self.task),
                "--result", str(self.home / "result.json"), "--parent-pid", str(os.getpid()),
                "--limits", json.dumps(limits.to_dict()),
                "--params", json.dumps(dict(self.genome.params))]
        log = str(self.home / "output.log")
        actions = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                   (os.POSIX_SPAWN_OPEN, 1, log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
                   (os.POSIX_SPAWN_DUP2, 1, 2)]
        self.started = time.monotonic()
        self.deadline = self.started + self.timeout_s
        self.pid = os.posix_spawn(python, argv, dict(env), file_actions=actions)
        with contextlib.suppress(OSError, AttributeError):  # no pidfds: polling it is
            self.pidfd = os.pidfd_open(self.pid)

    def finish_if_done(self) -> bool:
        """Reap the child if it exited, or kill it past its deadline; True when reaped."""
        pid, wait_status, usage = os.wait4(self.pid, os.WNOHANG)
        if pid == 0:
            if time.monotonic() < self.deadline:
                return False
            self.timed_out = True
            self.kill()
            pid, wait_status, usage = os.wait4(self.pid, 0)
        self.wall_s = time.monotonic() - self.started
        self.status = (wait_status, usage.ru_maxrss)
        self._close_pidfd()
        return True

    def kill(self) -> None:
        """SIGKILL the child's whole process group (what it forked dies too)."""
        for kill in (os.killpg, os.kill):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                kill(self.pid, signal.SIGKILL)

    def abandon(self) -> None:
        """Kill and reap without a result (the evaluation was interrupted)."""
        self.kill()
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)
        self._close_pidfd()

    def _close_pidfd(self) -> None:
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None

    def result(self) -> Evaluation:
        assert self.status is not None, "result() before the child was reaped"
        wait_status, maxrss_kib = self.status
        return Evaluation(self.genome.id, *self._judge(wait_status), round(self.wall_s, 6),
                          maxrss_kib * 1024)

    def _judge(self, wait_status: int) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        output = _tail(self.home / "output.log")
        if self.timed_out:
            return None, failure("hang", f"no result within {self.timeout_s:g} s; its process "
                                 "group was killed", last_output=output)
        report = _read_report(self.home / "result.json")
        if report is None:
            return None, _exit_failure(wait_status, output)
        if "failure" in report:
            return None, {**report["failure"], "last_output": output}
        problem = check_metrics(report.get("metrics"), report.get("score_range"))
        if problem is not None:
            return None, failure("gamed", problem, last_output=output)
        return report["metrics"], None


def _wait_some(running: list[_Run]) -> None:
    """Sleep until a child may have exited or the nearest deadline passed."""
    if not running:
        return
    timeout = max(0.0, min(run.deadline for run in running) - time.monotonic())
    fds = [run.pidfd for run in running if run.pidfd is not None]
    if len(fds) < len(running):
        timeout = min(timeout, _POLL_S)
    select.select(fds, [], [], timeout)


def _exit_failure(wait_status: int, output: str) -> dict[str, Any]:
    if os.WIFSIGNALED(wait_status):
        number = os.WTERMSIG(wait_status)
        name = signal.Signals(number).name if number in signal.Signals.__members__.values() \
            else str(number)
        return failure("signal", f"killed by {name} ({number})", last_output=output)
    code = os.waitstatus_to_exitcode(wait_status)
    return failure("crash", f"exited with code {code} before reporting a result",
                   last_output=output)


def _read_report(path: Path) -> dict[str, Any] | None:
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # never written, or cut short by a crash
    return report if isinstance(report, dict) else None


def _tail(path: Path, limit: int = LAST_OUTPUT_BYTES) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(max(0, path.stat().st_size - limit))
            return handle.read().decode("utf-8", "replace")
    except OSError:
        return ""


# -- the child ----------------------------------------------------------


def load_task(path: str | Path) -> Any:
    """Import a task file under a private module name (also used by the arbiter)."""
    path = Path(path)
    spec = importlib.util.spec_from_file_location(f"project_o_task_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise InvalidArgument(f"{path} is not an importable Python file")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _child(argv: Sequence[str]) -> int:
    args = _child_parser().parse_args(argv)
    # Open the result file before the sandbox: it becomes the kept descriptor (fd 3).
    fd = os.open(args.result, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    fd = apply_sandbox(fd, Limits.from_dict(json.loads(args.limits)),
                       parent_pid=args.parent_pid, use_cgroup=False)
    report = _evaluate_here(args.agent, args.task, json.loads(args.params))
    os.write(fd, json.dumps(report, default=repr).encode())
    os.fsync(fd)
    return 0


def _evaluate_here(agent_path: str, task_path: str, params: dict[str, Any]) -> dict[str, Any]:
    from project_o.runtime.loader import load_agent  # only the child imports agent code

    score_range: list[float] | None = None
    try:
        task = load_task(task_path)
        declared = getattr(task, "SCORE_RANGE", None)
        score_range = None if declared is None else [float(x) for x in declared]
        client = load_agent(agent_path).test_client(params=params)
        metrics = task.evaluate(client)
    except BaseException as exc:  # noqa: BLE001 - whatever the candidate raised is the report
        text = "".join(traceback.format_exception(exc))
        return {"failure": failure("exception", f"{type(exc).__name__}: {exc}"[:1000],
                                   traceback=text[-16_000:])}
    return {"metrics": metrics, "score_range": score_range}


def _child_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"python -m {_MODULE}")
    for name in ("--agent", "--task", "--result", "--limits", "--params"):
        parser.add_argument(name, required=True)
    parser.add_argument("--parent-pid", type=int, required=True)
    return parser


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
