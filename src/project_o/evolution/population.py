"""Evaluating a population: sandboxed evaluator children forked from one zygote.

::

    EvaluatorPool (the evolution's process; never imports agent or task code)
      │ spawn: python -m project_o.evolution.population --task T --control-fd N
      ▼                                 (scrubbed env, PYTHONHASHSEED=0, dies with us)
    evaluation zygote: runtime + task module imported, gc.freeze()
      │ ◄══ control socket ══ eval {batch, candidates, limits, timeout} + SCM_RIGHTS(pipe w)
      │ ══► forked {batch, pid} · exited {batch, exit_code, signal, memory_kb}
      │ ◄══ kill {batch}: SIGKILL the batch's process group (only while unreaped)
      ├─fork─► evaluator child (one per batch): setsid, PR_SET_PDEATHSIG, fds closed,
      │        RLIMIT_AS / RLIMIT_CPU / RLIMIT_NOFILE, stdout+stderr -> scratch/output.log
      │          once, sandboxed:     ══► ready
      │          for each candidate:  load (from memory) + evaluate(agent), alarm
      │                               ══► result {index, metrics|failure, time, cpu, rss,
      │                                           offset: where the next one's output starts}
      └─fork─► ... up to ``workers`` batches at once

    frame = 4-byte big-endian length + a MessagePack map (the wire's framing, own keys)

Isolation is per batch, accounting per candidate: after ``ready``, the
candidate running is the first without a result, so when a child dies
(signal, ``os._exit``, the kernel's memory killer) or stops answering (a
hang the alarm cannot break: the pool SIGKILLs its process group after
``timeout + WALL_GRACE_S``), exactly that candidate is charged and the ones
after it are re-dispatched in a fresh child. Exceptions, MemoryError and
Python-level hangs (the alarm) are caught in the child and cost it
nothing. A candidate that rebinds or patches the task's functions, its
constants or builtins (:mod:`.tamper`) is "gamed", and the child stops:
the rest of its batch runs in a fresh one. A candidate that writes forged
frames to the result pipe can only spoil its own batch:
``batch_size=1`` makes the isolation unit a single candidate.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import math
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, NoReturn, Self

import msgpack

from project_o.errors import InvalidArgument, ZygoteError
from project_o.evolution.cascade import wire_stages
from project_o.evolution.genome import Genome
from project_o.evolution.tamper import Snapshot
from project_o.evolution.task import (
    Evaluation,
    Task,
    evaluate_in_process,
    load_task,
    validate_metrics,
)
from project_o.runtime.procctl import (
    exited_child,
    kill_group,
    set_child_subreaper,
    set_parent_death_signal,
)
from project_o.runtime.sandbox import Limits, apply_sandbox, scrubbed_env

__all__ = [
    "DEFAULT_MEMORY_MB",
    "DEFAULT_TIMEOUT_S",
    "MAX_BATCH",
    "WALL_GRACE_S",
    "EvaluatorPool",
    "main",
]

#: per-candidate wall time; the example tasks answer in milliseconds to seconds
DEFAULT_TIMEOUT_S: Final = 10.0
#: address space of an evaluator child (RLIMIT_AS counts the zygote's imports too)
DEFAULT_MEMORY_MB: Final = 1024
#: past the candidate's alarm, how long before its process group is SIGKILLed
WALL_GRACE_S: Final = 2.0
#: a child that has not reported its first candidate by then is stuck
START_TIMEOUT_S: Final = 30.0
#: candidates per child at most: amortises the fork, bounds what one crash re-runs
MAX_BATCH: Final = 64
#: batches per worker per call, so a slow batch does not leave workers idle at the end
BATCHES_PER_WORKER: Final = 3
#: a batch expected to finish sooner than this is not split further: a fork, a sandbox
#: and a first candidate on cold pages cost milliseconds, more than balancing saves
SHORT_BATCH_S: Final = 0.05
#: weight of the newest candidate time in the running mean that predicts a batch's length
_MEAN_WEIGHT: Final = 0.05
#: after a child's exit, how long to wait for EOF on its pipe (a descendant that left
#: the process group may still hold the write end)
EOF_GRACE_S: Final = 1.0
#: a batch that dies before starting anything is retried this often, then charged
MAX_DISPATCHES: Final = 3
#: lines of a failed candidate's output kept with its failure
OUTPUT_TAIL_LINES: Final = 20
#: frames: a batch of sources fits easily; the wire's 64 MiB default maximum
MAX_FRAME: Final = 64 << 20
_RECV: Final = 1 << 16
_HEADER: Final = struct.Struct(">I")

ProgressCallback = Callable[[int, int], None]
BatchCallback = Callable[[list[Genome], list[Evaluation]], None]


# -- framing ------------------------------------------------------------


def _frame(message: dict[str, Any]) -> bytes:
    payload: bytes = msgpack.packb(message, use_bin_type=True)
    return _HEADER.pack(len(payload)) + payload


class _Frames:
    """Incremental decoder: bytes in, complete messages out; a bad frame raises ValueError."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        self._buffer += data
        messages = []
        while len(self._buffer) >= _HEADER.size:
            (size,) = _HEADER.unpack_from(self._buffer)
            if size > MAX_FRAME:  # checked before waiting for (or allocating) the payload
                raise ValueError(f"frame of {size} bytes exceeds {MAX_FRAME}")
            if len(self._buffer) < _HEADER.size + size:
                break
            payload = bytes(self._buffer[_HEADER.size:_HEADER.size + size])
            del self._buffer[:_HEADER.size + size]
            message = msgpack.unpackb(payload, raw=False)
            if not isinstance(message, dict):
                # a peer's protocol violation, not a caller's type error
                raise ValueError(f"expected a map, got {type(message).__name__}")  # noqa: TRY004
            messages.append(message)
        return messages


def _genome_wire(genome: Genome) -> dict[str, Any]:
    return {"id": genome.id, "sources": dict(genome.sources), "params": dict(genome.params)}


# -- the pool (the evolution's side) ------------------------------------


@dataclass
class _Batch:
    id: int
    genomes: list[Genome]
    scratch: Path
    read_fd: int
    dispatches: int
    frames: _Frames = field(default_factory=_Frames)
    pid: int | None = None
    ready: bool = False
    stopped: bool = False  # the child ended the batch early (a candidate tampered)
    offset: int = 0
    deadline: float = math.inf
    killed_for: str = ""
    eof: bool = False
    exit: dict[str, Any] | None = None
    results: dict[int, Evaluation] = field(default_factory=dict)

    @property
    def current(self) -> int | None:
        """The candidate running now (the first without a result), once the child is ready."""
        left = len(self.results) < len(self.genomes)
        return len(self.results) if self.ready and left and not self.stopped else None


class EvaluatorPool:
    """Evaluates genomes on a task in sandboxed evaluator children, ``workers`` at a time.

    Use as a context manager, or call :meth:`start` and :meth:`close`.
    """

    def __init__(self, task: str | Path, *, workers: int | None = None,
                 timeout_s: float = DEFAULT_TIMEOUT_S, memory_mb: int | None = DEFAULT_MEMORY_MB,
                 batch_size: int | None = None, scratch_dir: str | Path | None = None) -> None:
        if timeout_s <= 0 or (workers is not None and workers < 1):
            raise InvalidArgument(f"need timeout_s > 0 and workers >= 1, got {timeout_s}, "
                                  f"{workers}")
        self.task_path = Path(task).resolve()
        load_task_bounds_only = self.task_path.is_file()
        if not load_task_bounds_only:
            raise InvalidArgument(f"task file {self.task_path} does not exist")
        self.workers = workers or os.cpu_count() or 1
        self.timeout_s = float(timeout_s)
        self.memory_mb = memory_mb
        self.batch_size = batch_size
        # tmpfs when there is one: candidates are materialized (and fsynced) per evaluation.
        base = scratch_dir or ("/dev/shm" if os.path.isdir("/dev/shm") else None)
        self._scratch = Path(tempfile.mkdtemp(prefix="project-o-eval-", dir=base))
        self._process: subprocess.Popen[bytes] | None = None
        self._control: socket.socket | None = None
        self._frames = _Frames()
        self._batch_ids = 0
        self._mean_s: float | None = None  # seconds per candidate, from the results so far
        self.score_bounds: tuple[float, float] = (-math.inf, math.inf)
        #: the task's cascade as the zygote read it: (name, threshold) per stage
        self.stages: list[tuple[str, float | None]] = []

    # -- lifecycle ------------------------------------------------------

    def start(self) -> None:
        """Spawn the evaluation zygote and wait until it has imported the task."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        command = [sys.executable, "-m", "project_o.evolution.population",
                   "--task", str(self.task_path), "--control-fd", str(theirs.fileno()),
                   "--parent-pid", str(os.getpid())]
        log = open(self._scratch / "zygote.log", "ab")  # noqa: SIM115 - the child keeps it
        with theirs, log:
            self._process = subprocess.Popen(
                command, pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, stdout=log,
                stderr=log, env=scrubbed_env(extra={"PYTHONHASHSEED": "0"}))
        self._control = ours
        hello = self._next_control()
        if hello.get("op") != "hello":
            self.close()
            raise InvalidArgument(f"the task {self.task_path} failed to load: "
                                  f"{hello.get('message')}\n{hello.get('traceback', '')}")
        self.score_bounds = (float(hello["bounds"][0]), float(hello["bounds"][1]))
        self.stages = [(str(name), threshold) for name, threshold in hello.get("stages", [])]

    def close(self) -> None:
        """Stop the zygote (its children die with it) and remove the scratch space."""
        if self._control is not None:
            with contextlib.suppress(OSError):
                self._control.sendall(_frame({"op": "shutdown"}))
            self._control.close()
            self._control = None
        if self._process is not None:
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
        shutil.rmtree(self._scratch, ignore_errors=True)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- evaluation -----------------------------------------------------

    def evaluate(self, genomes: Sequence[Genome], *, on_batch: BatchCallback | None = None,
                 on_progress: ProgressCallback | None = None) -> dict[str, Evaluation]:
        """Evaluate each distinct genome once; results by genome id.

        ``on_batch(genomes, evaluations)`` runs as each batch completes (to make
        them durable), ``on_progress(done, total)`` after each candidate.
        """
        unique = list({g.id: g for g in genomes}.values())
        pending: deque[tuple[list[Genome], int]] = deque(
            (chunk, 0) for chunk in _chunks(unique, self._batch_size(len(unique))))
        running: dict[int, _Batch] = {}
        results: dict[str, Evaluation] = {}
        while pending or running:
            while pending and len(running) < self.workers:
                batch = self._dispatch(*pending.popleft())
                running[batch.id] = batch
            self._wait(running)
            for batch in [b for b in running.values() if b.eof and b.exit is not None]:
                del running[batch.id]
                pending.extend(self._finish(batch, results, on_batch))
            if on_progress is not None:
                on_progress(len(results), len(unique))
        return results

    def _batch_size(self, count: int) -> int:
        if self.batch_size is not None:
            return max(1, self.batch_size)
        per_worker = math.ceil(count / self.workers)
        split = math.ceil(per_worker / BATCHES_PER_WORKER)
        if self._mean_s is not None and self._mean_s * split < SHORT_BATCH_S:
            split = per_worker  # fast candidates: one batch per worker
        return max(1, min(MAX_BATCH, split))

    def _dispatch(self, genomes: list[Genome], dispatches: int) -> _Batch:
        self._batch_ids += 1
        scratch = self._scratch / f"batch-{self._batch_ids}"
        scratch.mkdir()
        read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
        limits = Limits(memory_bytes=None if self.memory_mb is None else self.memory_mb << 20,
                        cpu_seconds=math.ceil(self.timeout_s * len(genomes)) + 1)
        request = _frame({"op": "eval", "batch": self._batch_ids, "scratch": str(scratch),
                          "timeout": self.timeout_s, "limits": limits.to_dict(),
                          "candidates": [_genome_wire(g) for g in genomes]})
        try:
            sent = socket.send_fds(self._control_socket(), [request], [write_fd])
            if sent < len(request):
                self._control_socket().sendall(request[sent:])
        except OSError as exc:
            raise ZygoteError(f"the evaluation zygote is gone ({exc}); see "
                              f"{self._scratch / 'zygote.log'}") from exc
        finally:
            os.close(write_fd)
        os.set_blocking(read_fd, False)
        return _Batch(self._batch_ids, genomes, scratch, read_fd, dispatches + 1,
                      deadline=time.monotonic() + START_TIMEOUT_S)

    def _wait(self, running: dict[int, _Batch]) -> None:
        control = self._control_socket()
        by_fd = {b.read_fd: b for b in running.values() if not b.eof}
        soonest = min((b.deadline for b in running.values()), default=math.inf)
        timeout = max(0.0, min(soonest - time.monotonic(), 1.0))
        readable, _, _ = select.select([control.fileno(), *by_fd], [], [], timeout)
        for fd in readable:
            if fd == control.fileno():
                self._on_control(self._read_control(), running)
            else:
                self._read_results(by_fd[fd])
        now = time.monotonic()
        for batch in running.values():
            if batch.deadline <= now and batch.exit is not None and not batch.eof:
                batch.eof = True  # exited, but something outside its group holds the pipe
                os.close(batch.read_fd)
            elif batch.deadline <= now and not batch.killed_for:
                batch.killed_for = "timeout" if batch.current is not None else "no start"
                self._control_socket().sendall(_frame({"op": "kill", "batch": batch.id}))

    def _on_control(self, messages: list[dict[str, Any]], running: dict[int, _Batch]) -> None:
        for message in messages:
            batch = running.get(int(message.get("batch", -1)))
            if batch is None:
                continue
            if message.get("op") == "forked":
                batch.pid = int(message["pid"])
            elif message.get("op") == "exited":
                batch.exit = message
                batch.deadline = min(batch.deadline, time.monotonic() + EOF_GRACE_S)

    def _read_results(self, batch: _Batch) -> None:
        try:
            data = os.read(batch.read_fd, _RECV)
        except BlockingIOError:
            return
        if not data:
            batch.eof = True
            os.close(batch.read_fd)
            return
        try:
            messages = batch.frames.feed(data)
        except (ValueError, msgpack.UnpackException) as exc:
            self._spoiled(batch, f"sent an unreadable frame ({exc})")
            return
        for message in messages:
            self._on_result(batch, message)

    def _on_result(self, batch: _Batch, message: dict[str, Any]) -> None:
        op, index = message.get("op"), message.get("index")
        if op == "ready" and not batch.ready:
            batch.ready = True
        elif op == "result" and batch.current is not None and index == batch.current:
            genome = batch.genomes[index]
            batch.results[index] = validate_metrics(genome.id, message, self.score_bounds,
                                                    self.stages)
            batch.offset = int(message.get("offset", batch.offset))
            batch.stopped = message.get("tampered") is True
            self._learn(batch.results[index])
        else:
            expected = "ready" if not batch.ready else f"result {batch.current}"
            self._spoiled(batch, f"sent {op!r} for candidate {index!r}, expected {expected}")
            return
        # The next candidate starts now: its alarm is the child's, this is the backstop.
        batch.deadline = time.monotonic() + self.timeout_s + WALL_GRACE_S \
            if batch.current is not None else math.inf

    def _learn(self, evaluation: Evaluation) -> None:
        seconds = evaluation.metrics.get("time_s")
        if isinstance(seconds, float) and math.isfinite(seconds):
            self._mean_s = seconds if self._mean_s is None else \
                (1 - _MEAN_WEIGHT) * self._mean_s + _MEAN_WEIGHT * seconds

    def _spoiled(self, batch: _Batch, reason: str) -> None:
        # Only a candidate can have written that: charge the running one, kill the batch.
        if not batch.killed_for:
            batch.killed_for = f"protocol: the evaluator {reason}"
            self._control_socket().sendall(_frame({"op": "kill", "batch": batch.id}))

    def _finish(self, batch: _Batch, results: dict[str, Evaluation],
                on_batch: BatchCallback | None) -> list[tuple[list[Genome], int]]:
        """Record what the batch settled; return what must run again."""
        if batch.current is not None:
            genome = batch.genomes[batch.current]
            batch.results[batch.current] = Evaluation(genome.id, {}, self._charge(batch))
        done = sorted(batch.results)
        evaluations = [batch.results[i] for i in done]
        for evaluation in evaluations:
            results[evaluation.genome_id] = evaluation
        if on_batch is not None and evaluations:
            on_batch([batch.genomes[i] for i in done], evaluations)
        shutil.rmtree(batch.scratch, ignore_errors=True)
        rest = [g for i, g in enumerate(batch.genomes) if i not in batch.results]
        if not rest:
            return []
        if batch.results or batch.dispatches < MAX_DISPATCHES:
            return [(rest, 0 if batch.results else batch.dispatches)]
        failure = {"kind": "crash", "reason": "the evaluator died before running it "
                   f"{MAX_DISPATCHES} times: {_exit_words(batch.exit)}"}
        lost = [Evaluation(g.id, {}, failure) for g in rest]
        for evaluation in lost:
            results[evaluation.genome_id] = evaluation
        if on_batch is not None:
            on_batch(rest, lost)
        return []

    def _charge(self, batch: _Batch) -> dict[str, Any]:
        """The failure of the candidate that was running when its batch ended."""
        exit_info = batch.exit or {}
        failure: dict[str, Any] = {
            "exit_code": exit_info.get("exit_code"), "signal": exit_info.get("signal"),
            "output": _tail(batch.scratch / "output.log", batch.offset)}
        if batch.killed_for == "timeout":
            failure.update(kind="timeout", reason=f"no answer within {self.timeout_s:g} s + "
                           f"{WALL_GRACE_S:g} s grace; its process group was SIGKILLed")
        elif batch.killed_for:
            failure.update(kind="crash", reason=batch.killed_for)
        else:
            failure.update(kind="crash", reason=f"the evaluator died: {_exit_words(exit_info)}")
        return failure

    def _control_socket(self) -> socket.socket:
        if self._control is None:
            raise ZygoteError("the evaluator pool is not started; call start() first")
        return self._control

    def _read_control(self) -> list[dict[str, Any]]:
        data = self._control_socket().recv(_RECV)
        if not data:
            raise ZygoteError(f"the evaluation zygote died; see {self._scratch / 'zygote.log'}")
        return self._frames.feed(data)

    def _next_control(self) -> dict[str, Any]:
        while True:
            messages = self._read_control()
            if messages:
                return messages[0]


def _chunks(items: list[Genome], size: int) -> list[list[Genome]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def _exit_words(exit_info: dict[str, Any] | None) -> str:
    if not exit_info:
        return "no exit status"
    if exit_info.get("signal"):
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(exit_info['signal']).name}"
    return f"exit code {exit_info.get('exit_code')}"


def _tail(path: Path, offset: int) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            text = handle.read()[-16384:].decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-OUTPUT_TAIL_LINES:])


# -- the zygote (its own process) ---------------------------------------


class _Zygote:
    """Task imported, frozen; forks one sandboxed child per batch; never returns."""

    def __init__(self, control: socket.socket, task: Task) -> None:
        self._control, self._task = control, task
        self._frames = _Frames()
        self._fds: deque[int] = deque()
        self._children: dict[int, int] = {}  # pid -> batch
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)

    def serve(self) -> NoReturn:
        while True:
            readable, _, _ = select.select([self._control.fileno(), self._wake_r], [], [])
            if self._wake_r in readable:
                with contextlib.suppress(BlockingIOError):
                    while os.read(self._wake_r, 4096):
                        pass
                self._reap()
            if self._control.fileno() in readable:
                self._read()

    def _read(self) -> None:
        try:
            data, fds, _, _ = socket.recv_fds(self._control, _RECV, 16)
        except OSError:
            data, fds = b"", []
        self._fds.extend(fds)
        if not data:
            self._stop()
        for message in self._frames.feed(data):
            op = message.get("op")
            if op == "eval":
                self._fork(message)
            elif op == "kill":
                self._kill(int(message["batch"]))
            else:
                self._stop()

    def _fork(self, request: dict[str, Any]) -> None:
        fd = self._fds.popleft()
        zygote = os.getpid()
        pid = os.fork()
        if pid == 0:
            _become_evaluator(fd, request, self._task, zygote)
        os.close(fd)
        self._children[pid] = int(request["batch"])
        self._send(op="forked", batch=request["batch"], pid=pid)

    def _kill(self, batch: int) -> None:
        for pid, owner in self._children.items():
            if owner == batch:  # still ours and unreaped, so the group id is still its own
                kill_group(pid)

    def _reap(self) -> None:
        while (pid := exited_child()) is not None:
            batch = self._children.pop(pid, None)
            if batch is not None:
                kill_group(pid)
            _, status, usage = os.wait4(pid, 0)
            if batch is not None:
                code = os.waitstatus_to_exitcode(status)
                self._send(op="exited", batch=batch, exit_code=code if code >= 0 else None,
                           signal=-code if code < 0 else None, memory_kb=usage.ru_maxrss)

    def _send(self, **message: Any) -> None:
        with contextlib.suppress(OSError):
            self._control.sendall(_frame(message))

    def _stop(self) -> NoReturn:
        for pid in list(self._children):
            kill_group(pid)
        os._exit(0)


def _become_evaluator(fd: int, request: dict[str, Any], task: Task, zygote: int) -> NoReturn:
    """The evaluator child: sandbox, then run the batch; never returns into the zygote."""
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        scratch = Path(request["scratch"])
        output = os.open(scratch / "output.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(output, 1)
        os.dup2(output, 2)
        os.close(output)
        limits = Limits.from_dict(request["limits"])
        results = apply_sandbox(fd, limits, parent_pid=zygote, use_cgroup=False)
        _run_batch(results, request, task, scratch)
    except BaseException:  # noqa: BLE001 - never return into the zygote's loop
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(0)


def _run_batch(fd: int, request: dict[str, Any], task: Task, scratch: Path) -> None:
    guard = Snapshot(task.module)  # before any candidate code has run in this process
    _write_all(fd, _frame({"op": "ready"}))
    for index, wire in enumerate(request["candidates"]):
        genome = Genome(wire["sources"], wire["params"])
        raw = evaluate_in_process(task, genome, scratch, float(request["timeout"]), guard)
        sys.stdout.flush()
        sys.stderr.flush()
        _write_all(fd, _frame({"op": "result", "index": index,
                               "offset": os.lseek(1, 0, os.SEEK_END), **raw}))
        if raw["tampered"]:
            return  # this process is no longer the evaluator it was: the rest get a fresh one


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def main(argv: list[str] | None = None) -> NoReturn:
    """Entry point of the evaluation zygote."""
    parser = argparse.ArgumentParser(prog="python -m project_o.evolution.population")
    parser.add_argument("--task", required=True)
    parser.add_argument("--control-fd", type=int, required=True)
    parser.add_argument("--parent-pid", type=int, default=None)
    args = parser.parse_args(argv)
    set_parent_death_signal(signal.SIGKILL, expected_parent=args.parent_pid)
    set_child_subreaper()
    control = socket.socket(fileno=args.control_fd)
    try:
        task = load_task(args.task)
    except BaseException as exc:  # noqa: BLE001 - report any import failure, then exit
        with contextlib.suppress(OSError):
            control.sendall(_frame({"op": "error", "message": f"{type(exc).__name__}: {exc}",
                                    "traceback": "".join(traceback.format_exception(exc))}))
        os._exit(1)
    gc.collect()
    gc.freeze()  # imported objects are never written by the collector: pages stay shared
    control.sendall(_frame({"op": "hello", "pid": os.getpid(), "bounds": list(task.score_bounds),
                            "stages": wire_stages(task.stages)}))
    _Zygote(control, task).serve()


if __name__ == "__main__":
    main()
