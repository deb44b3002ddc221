"""Evaluating a population: sandboxed evaluator children forked from one zygote.

::

    EvaluatorPool (the evolution's process; never imports agent or task code)
      │ spawn: python -m project_o.runtime.zygote --program evaluator --task T
      ▼                                 (scrubbed env, PYTHONHASHSEED=0, dies with us)
    the zygote (runtime.zygote, the one every sandboxed child comes from), running
    the evaluator program (.evaluator): task module imported, gc.freeze()
      │ ◄══ control socket ══ fork {id: batch, candidates, limits, timeout, stream}
      │                            + SCM_RIGHTS(the child's end of a socketpair)
      │ ══► forked {id, pid} · exited {id, exit_code, signal, memory_kb} · error {id, ...}
      │ ◄══ kill {id}: SIGKILL the batch's process group (only while unreaped)
      ├─fork─► evaluator child (one per batch), through the zygote's one sandbox: setsid,
      │        PR_SET_PDEATHSIG, fds closed, RLIMIT_AS / RLIMIT_CPU / RLIMIT_NOFILE,
      │        stdout+stderr -> scratch/output.log
      │          once, sandboxed:     ══► hello (ready)
      │          a stream:            ◄══ request {candidates} ... shutdown (EvaluationStream)
      │          for each candidate:  load (from memory) + evaluate(agent), alarm
      │                               ══► response {index, metrics|failure, time, cpu, rss,
      │                                             offset: where the next one's output starts}
      └─fork─► ... up to ``workers`` batches at once

    every frame, on both channels: the wire's framing (project_o.wire)

Isolation is per batch, accounting per candidate: after ``ready``, the
candidate running is the first without a result, so when a child dies
(signal, ``os._exit``, the kernel's memory killer) or stops answering (a
hang the alarm cannot break: the pool SIGKILLs its process group after
``timeout + WALL_GRACE_S``), exactly that candidate is charged and the ones
after it are re-dispatched in a fresh child. Exceptions, MemoryError and
Python-level hangs (the alarm) are caught in the child and cost it
nothing. A candidate that rebinds or patches the task's functions, its
constants or builtins (:mod:`.tamper`) is "gamed", and the child stops:
the rest of its batch runs in a fresh one.

Every result frame is checked strictly (:mod:`.result_check`): it must
answer for the running candidate, with fields of the right types, or the
running candidate fails and the batch is killed; the run goes on. A
candidate that writes forged frames to the result pipe (it shares the
child's process) can spoil its batch, so a spoiled batch of several
candidates charges none of them: each is evaluated again in a child of
its own, where a forgery can only be its own. It can still forge its own
score with ``evaluate(agent)``; a two-phase task (``run`` + ``score``,
:mod:`.task`) closes that too: the child sends outputs, this process
scores them (importing the task for ``score`` only), and every candidate
runs in a child of its own.

:meth:`EvaluatorPool.evaluate` takes a finished list; :meth:`EvaluatorPool.stream`
takes candidates one at a time while the caller is still breeding the rest
(:class:`EvaluationStream`): its children are forked ahead, stay open across
generations up to a full batch, and evaluate on the other cores meanwhile.
"""

from __future__ import annotations

import contextlib
import math
import os
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Self

from project_o.errors import InvalidArgument, ProtocolError, ZygoteError
from project_o.evolution.evaluator import EVALUATOR_PROGRAM, OUTPUT_LOG
from project_o.evolution.genome import Genome
from project_o.evolution.result_check import result_problem
from project_o.evolution.task import Evaluation, Task, load_task, score_outputs, validate_metrics
from project_o.runtime.child import zygote_command
from project_o.runtime.confine.policy import SandboxPolicy
from project_o.runtime.sandbox import Limits, scrubbed_env, with_package_path
from project_o.wire import FrameDecoder, FrameLimits, Message, MessageType, encode_frame

__all__ = [
    "DEFAULT_MEMORY_MB",
    "DEFAULT_TIMEOUT_S",
    "MAX_BATCH",
    "STREAM_BATCH",
    "WALL_GRACE_S",
    "EvaluationStream",
    "EvaluatorPool",
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
#: candidates per streamed child at most (without ``batch_size``). A fresh child costs
#: ~9 ms of CPU (the fork's copy-on-write faults, a first candidate on cold pages), as
#: much as 30-60 small candidates: at 64 a third of a symbreg run's evaluator CPU went
#: to forks. What a larger batch changes and what it does not (docs/design.md,
#: "Parallel evolution"): every candidate still runs sandboxed, a crash, hang or tamper still
#: charges exactly the candidate running and the rest go to a fresh child, a two-phase
#: task still runs one candidate per child; what grows is how many later candidates an
#: undetected in-process trick can reach (the ``evaluate(agent)`` form promises no more
#: than that), and how many solo re-runs a forged frame costs. ``batch_size`` bounds both.
STREAM_BATCH: Final = 256
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
#: a stream reads what its children sent after every this many candidates submitted
#: (and whenever a child was idle): often enough to keep them busy, rarely enough that
#: the select() calls cost nothing beside breeding
PUMP_EVERY: Final = 4
#: streamed candidates sent in one frame at most (fewer when the child needs work now)
FRAME_CANDIDATES: Final = 8
#: frames: a batch of sources fits easily; the wire's 64 MiB default maximum
MAX_FRAME: Final = 64 << 20
_RECV: Final = 1 << 16
#: what an evaluator child (candidate code runs there) may send on its result pipe
RESULT_LIMITS: Final = FrameLimits({MessageType.HELLO: 64 << 10, MessageType.RESPONSE: MAX_FRAME})
#: how the reason of a batch killed for a bad frame starts
_PROTOCOL: Final = "protocol"

ProgressCallback = Callable[[int, int], None]
BatchCallback = Callable[[list[Genome], list[Evaluation]], None]


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
    #: the parent's end of the batch's socketpair: results come in, streamed candidates go out
    channel: socket.socket | None = None
    #: a streamed batch still takes candidates (:class:`EvaluationStream`)
    accepting: bool = False
    #: frames not yet taken by the child's socket buffer
    outbox: bytearray = field(default_factory=bytearray)
    #: candidates sent to the child (the fork request's, then the stream's frames)
    sent: int = 0
    #: streamed candidates queued here, sent in one frame once the child needs them
    unsent: list[dict[str, Any]] = field(default_factory=list)
    frames: FrameDecoder = field(default_factory=lambda: FrameDecoder(limits=RESULT_LIMITS))
    pid: int | None = None
    ready: bool = False
    stopped: bool = False  # the child ended the batch early (a candidate tampered)
    offset: int = 0
    deadline: float = math.inf
    killed_for: str = ""
    eof: bool = False
    exit: dict[str, Any] | None = None
    results: dict[int, Evaluation] = field(default_factory=dict)
    #: results handed to on_batch so far (a streamed batch hands them over per generation)
    recorded: int = 0

    @property
    def current(self) -> int | None:
        """The candidate running now (the first without a result), once the child is ready."""
        left = len(self.results) < self.sent
        return len(self.results) if self.ready and left and not self.stopped else None


class EvaluatorPool:
    """Evaluates genomes on a task in sandboxed evaluator children, ``workers`` at a time.

    Use as a context manager, or call :meth:`start` and :meth:`close`.
    """

    def __init__(self, task: str | Path, *, workers: int | None = None,
                 timeout_s: float = DEFAULT_TIMEOUT_S, memory_mb: int | None = DEFAULT_MEMORY_MB,
                 batch_size: int | None = None, scratch_dir: str | Path | None = None,
                 writable: Sequence[str | Path] = ()) -> None:
        if timeout_s <= 0 or (workers is not None and workers < 1):
            raise InvalidArgument(f"need timeout_s > 0 and workers >= 1, got {timeout_s}, "
                                  f"{workers}")
        self.task_path = Path(task).resolve()
        load_task_bounds_only = self.task_path.is_file()
        if not load_task_bounds_only:
            raise InvalidArgument(f"task file {self.task_path} does not exist")
        self.workers = workers or os.cpu_count() or 1
        #: children a stream keeps open: the caller breeds on a core of its own meanwhile,
        #: so by default one fewer than the cores (a third process on two cores kept
        #: preempting the breeding, and each open child is a fork more)
        self.stream_workers = workers or max(1, (os.cpu_count() or 1) - 1)
        self.timeout_s = float(timeout_s)
        self.memory_mb = memory_mb
        self.batch_size = batch_size
        # tmpfs when there is one: candidates are materialized (and fsynced) per evaluation.
        base = scratch_dir or ("/dev/shm" if os.path.isdir("/dev/shm") else None)
        self._scratch = Path(tempfile.mkdtemp(prefix="project-o-eval-", dir=base))
        #: directories candidates may write besides the scratch space (in their sandbox)
        self.writable = tuple(str(Path(p).resolve()) for p in writable)
        self._process: subprocess.Popen[bytes] | None = None
        self._forker: int | None = None  # the zygote that forks, when not the started one
        self._control: socket.socket | None = None
        self._frames = FrameDecoder(MAX_FRAME)
        self._batch_ids = 0
        self._mean_s: float | None = None  # seconds per candidate, from the results so far
        self.score_bounds: tuple[float, float] = (-math.inf, math.inf)
        #: the task's cascade as the zygote read it: (name, threshold) per stage
        self.stages: list[tuple[str, float | None]] = []
        #: a two-phase task, imported here for its ``score`` (None: evaluate(agent) tasks)
        self.scorer: Task | None = None

    # -- lifecycle ------------------------------------------------------

    def start(self) -> None:
        """Spawn the evaluation zygote and wait until it has imported the task."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        # Candidates write only to the scratch space (their outputs, materialized files).
        command = zygote_command(EVALUATOR_PROGRAM, ["--task", str(self.task_path)],
                                 theirs.fileno(),
                                 sandbox=SandboxPolicy(writable=(str(self._scratch),
                                                                 *self.writable)))
        log = open(self._scratch / "zygote.log", "ab")  # noqa: SIM115 - the child keeps it
        with theirs, log:
            self._process = subprocess.Popen(
                command, pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, stdout=log,
                stderr=log, env=with_package_path(scrubbed_env(extra={"PYTHONHASHSEED": "0"})))
        self._control = ours
        hello = self._next_control()
        if hello.type != MessageType.HELLO:
            self.close()
            raise InvalidArgument(f"the task {self.task_path} failed to load: "
                                  f"{hello.data.get('message')}\n"
                                  f"{hello.data.get('traceback', '')}")
        # In a PID namespace, the zygote that forks (and reaps) the children is a child of
        # the started process: its CPU times hold theirs.
        forker = hello.data.get("host_pid")
        self._forker = forker if isinstance(forker, int) and forker > 0 else None
        bounds = hello.data["bounds"]
        self.score_bounds = (float(bounds[0]), float(bounds[1]))
        self.stages = [(str(name), threshold) for name, threshold in hello.data.get("stages", [])]
        if hello.data.get("phases") == 2:
            # The task file is the user's (trusted); candidates never ran in this process.
            self.scorer = load_task(self.task_path)
            # No candidate shares a process with another's result: one per child, in
            # every batch (evaluate's, a stream's) and in its CPU limit.
            self.batch_size = 1

    def close(self) -> None:
        """Stop the zygote (its children die with it) and remove the scratch space."""
        if self._control is not None:
            with contextlib.suppress(OSError):
                self._control.sendall(encode_frame(Message(MessageType.SHUTDOWN, {})))
            self._control.close()
            self._control = None
        if self._process is not None:
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
            self._forker = None
        shutil.rmtree(self._scratch, ignore_errors=True)

    def cpu_seconds(self) -> float | None:
        """CPU time used so far by the evaluation zygote and the children it reaped.

        From ``/proc`` (Linux; None elsewhere or once stopped): with the
        caller's own CPU time, what evaluating cost on every core, whatever
        else the machine was doing.
        """
        if self._process is None:
            return None
        pids = {self._process.pid}
        if self._forker is not None:  # alive, it is not in the started process's cutime yet
            pids.add(self._forker)
        try:
            ticks = sum(_cpu_ticks(pid) for pid in sorted(pids))
        except OSError:
            return None
        return ticks / os.sysconf("SC_CLK_TCK")

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
        results: dict[str, Evaluation] = {}
        self._settle(pending, {}, results, len(unique), on_batch, on_progress)
        return results

    def stream(self) -> EvaluationStream:
        """Evaluate candidates while they are still being bred (see :class:`EvaluationStream`).

        Forks ``stream_workers`` sandboxed children at once, so that their fork and
        sandbox overlap the caller's work; one stream at a time per pool, and
        no :meth:`evaluate` while it is open.
        """
        return EvaluationStream(self)

    def _settle(self, pending: deque[tuple[list[Genome], int]], running: dict[int, _Batch],
                results: dict[str, Evaluation], total: int, on_batch: BatchCallback | None,
                on_progress: ProgressCallback | None,
                busy: Callable[[_Batch], bool] = lambda batch: True) -> None:
        """Run ``pending`` beside ``running`` while any of them is ``busy``.

        A batch that ends is recorded (``_finish``) and what it left runs in a
        fresh one; by default every batch is waited for until it has ended. A
        stream's open batches take ``workers`` slots besides.
        """
        while pending or any(busy(b) for b in running.values()):
            while pending and len(running) < self.workers + sum(b.accepting
                                                                for b in running.values()):
                batch = self._dispatch(*pending.popleft())
                running[batch.id] = batch
            self._wait(running)
            for batch in [b for b in running.values() if _ended(b)]:
                del running[batch.id]
                pending.extend(self._finish(batch, results, on_batch))
            if on_progress is not None:
                on_progress(len(results) + sum(len(b.results) - b.recorded
                                               for b in running.values()), total)

    def _batch_size(self, count: int) -> int:
        if self.batch_size is not None:
            return max(1, self.batch_size)
        per_worker = math.ceil(count / self.workers)
        split = math.ceil(per_worker / BATCHES_PER_WORKER)
        if self._mean_s is not None and self._mean_s * split < SHORT_BATCH_S:
            split = per_worker  # fast candidates: one batch per worker
        return max(1, min(MAX_BATCH, split))

    @property
    def _stream_capacity(self) -> int:
        """The most candidates a streamed batch takes: ``batch_size``, else STREAM_BATCH."""
        return STREAM_BATCH if self.batch_size is None else max(1, self.batch_size)

    def _dispatch(self, genomes: list[Genome], dispatches: int, *,
                  stream: bool = False) -> _Batch:
        self._batch_ids += 1
        scratch = self._scratch / f"batch-{self._batch_ids}"
        scratch.mkdir()
        # A socketpair, not a pipe: a streamed batch is sent its candidates on it.
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        capacity = self._stream_capacity if stream else len(genomes)
        limits = Limits(memory_bytes=None if self.memory_mb is None else self.memory_mb << 20,
                        cpu_seconds=math.ceil(self.timeout_s * capacity) + 1)
        request = encode_frame(Message(MessageType.FORK, {
            "id": self._batch_ids, "scratch": str(scratch), "timeout": self.timeout_s,
            "limits": limits.to_dict(), "candidates": [_genome_wire(g) for g in genomes],
            "stream": stream}), MAX_FRAME)
        try:
            sent = socket.send_fds(self._control_socket(), [request], [theirs.fileno()])
            if sent < len(request):
                self._control_socket().sendall(request[sent:])
        except OSError as exc:
            ours.close()
            raise ZygoteError(f"the evaluation zygote is gone ({exc}); see "
                              f"{self._scratch / 'zygote.log'}") from exc
        finally:
            theirs.close()
        ours.setblocking(False)
        return _Batch(self._batch_ids, list(genomes), scratch, ours.fileno(), dispatches + 1,
                      channel=ours, accepting=stream, sent=len(genomes),
                      deadline=time.monotonic() + START_TIMEOUT_S)

    def _wait(self, running: dict[int, _Batch], longest: float = 1.0) -> None:
        """Take what the zygote and the children sent (``longest`` s at most); feed the
        streamed children that ran out of candidates; kill those past their deadline."""
        control = self._control_socket()
        by_fd = {b.read_fd: b for b in running.values() if not b.eof}
        soonest = min((b.deadline for b in running.values()), default=math.inf)
        timeout = max(0.0, min(soonest - time.monotonic(), longest))
        sending = [fd for fd, b in by_fd.items() if b.outbox]
        readable, writable, _ = select.select([control.fileno(), *by_fd], sending, [], timeout)
        for fd in writable:
            _flush(by_fd[fd])
        for fd in readable:
            if fd == control.fileno():
                self._on_control(self._read_control(), running)
            else:
                self._read_results(by_fd[fd])
        for batch in running.values():
            if batch.unsent and len(batch.results) >= batch.sent:
                _send(batch, self)  # a streamed child ran out of candidates: feed it
        now = time.monotonic()
        for batch in running.values():
            if batch.deadline <= now and batch.exit is not None and not batch.eof:
                batch.eof = True  # exited, but something outside its group holds the pipe
                _close(batch)
            elif batch.deadline <= now and not batch.killed_for:
                batch.killed_for = "timeout" if batch.current is not None else "no start"
                self._kill(batch)

    def _kill(self, batch: _Batch) -> None:
        self._control_socket().sendall(encode_frame(Message(MessageType.KILL, {"id": batch.id})))

    def _on_control(self, messages: list[Message], running: dict[int, _Batch]) -> None:
        for message in messages:
            data = message.data
            batch = running.get(data.get("id"))  # type: ignore[arg-type]
            if batch is None:
                continue
            if message.type == MessageType.FORKED:
                batch.pid = int(data["pid"])
            elif message.type in (MessageType.EXITED, MessageType.ERROR):
                # error: the zygote could not fork it; the pipe's write end is closed already
                batch.exit = data
                batch.deadline = min(batch.deadline, time.monotonic() + EOF_GRACE_S)

    def _read_results(self, batch: _Batch) -> None:
        try:
            data = os.read(batch.read_fd, _RECV)
        except BlockingIOError:
            return
        except OSError:  # ECONNRESET: the child died with candidates unread
            data = b""
        if not data:
            batch.eof = True
            _close(batch)
            return
        try:
            messages = batch.frames.feed(data)
        except ProtocolError as exc:
            self._spoiled(batch, f"sent an unreadable frame ({exc})")
            return
        for message in messages:
            if batch.killed_for:
                return  # killed (a bad frame, a timeout): nothing after it is believed
            self._on_result(batch, message)

    def _on_result(self, batch: _Batch, message: Message) -> None:
        kind, result = message.type, message.data
        if kind == MessageType.HELLO and not batch.ready:
            batch.ready = True
        elif kind == MessageType.RESPONSE and batch.current is not None:
            problem = result_problem(result, batch.current, previous_offset=batch.offset,
                                     two_phase=self.scorer is not None)
            if problem is not None:
                self._spoiled(batch, f"sent a bad result ({problem})")
                return
            self._accept(batch, batch.current, result)
        else:
            expected = "hello" if not batch.ready else f"response {batch.current}"
            self._spoiled(batch, f"sent {str(kind)!r} for candidate "
                          f"{str(result.get('index'))[:40]}, expected {expected}")
            return
        # The next candidate starts now: its alarm is the child's, this is the backstop.
        batch.deadline = time.monotonic() + self.timeout_s + WALL_GRACE_S \
            if batch.current is not None else math.inf

    def _accept(self, batch: _Batch, index: int, result: dict[str, Any]) -> None:
        """Judge a checked result (scoring a two-phase task's outputs here)."""
        genome = batch.genomes[index]
        if self.scorer is not None and result.get("failure") is None:
            metrics, failure = score_outputs(self.scorer, result["outputs"])
            result = {**result, "metrics": metrics, "failure": failure}
        evaluation = validate_metrics(genome.id, result, self.score_bounds, self.stages)
        start, batch.offset = batch.offset, result["offset"]
        if evaluation.failure is not None and batch.offset > start:
            # What the failed candidate printed: an artifact for the next LLM prompt.
            evaluation.failure.setdefault(
                "output", _tail(batch.scratch / OUTPUT_LOG, start, batch.offset))
        batch.results[index] = evaluation
        batch.stopped = result["tampered"]
        self._learn(evaluation)

    def _learn(self, evaluation: Evaluation) -> None:
        seconds = evaluation.metrics.get("time_s")
        if isinstance(seconds, float) and math.isfinite(seconds):
            self._mean_s = seconds if self._mean_s is None else \
                (1 - _MEAN_WEIGHT) * self._mean_s + _MEAN_WEIGHT * seconds

    def _spoiled(self, batch: _Batch, reason: str) -> None:
        # Only a candidate can have written that: kill the batch. Alone, the running
        # candidate is charged; in a batch of several, any of them may have forged it.
        if not batch.killed_for:
            batch.killed_for = f"{_PROTOCOL}: the evaluator {reason}"
            self._kill(batch)

    def _finish(self, batch: _Batch, results: dict[str, Evaluation],
                on_batch: BatchCallback | None) -> list[tuple[list[Genome], int]]:
        """Record what the batch settled; return what must run again."""
        if batch.killed_for.startswith(_PROTOCOL) and len(batch.genomes) > 1:
            # Forged frames: no result of this batch can be trusted, nor the blame (those
            # a stream already recorded stay: a recorded evaluation is never taken back).
            recorded = set(sorted(batch.results)[:batch.recorded])
            shutil.rmtree(batch.scratch, ignore_errors=True)
            return [([genome], 0) for index, genome in enumerate(batch.genomes)
                    if index not in recorded]
        if batch.current is not None:
            genome = batch.genomes[batch.current]
            batch.results[batch.current] = Evaluation(genome.id, {}, self._charge(batch))
        _record(batch, results, on_batch)
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
            "output": _tail(batch.scratch / OUTPUT_LOG, batch.offset)}
        if batch.killed_for == "timeout":
            failure.update(kind="timeout", reason=f"no answer within {self.timeout_s:g} s + "
                           f"{WALL_GRACE_S:g} s grace; its process group was SIGKILLed")
        elif batch.killed_for:
            failure.update(kind="crash", reason=batch.killed_for)
        elif exit_info.get("signal") == signal.SIGXCPU:
            # The CPU limit is the other backstop for a hang the alarm cannot break
            # (a loop in C); whichever of the two fires first, the candidate ran out of time.
            failure.update(kind="timeout", reason="it used up the batch's CPU time "
                           "(RLIMIT_CPU, SIGXCPU) without answering")
        else:
            failure.update(kind="crash", reason=f"the evaluator died: {_exit_words(exit_info)}")
        return failure

    def _control_socket(self) -> socket.socket:
        if self._control is None:
            raise ZygoteError("the evaluator pool is not started; call start() first")
        return self._control

    def _read_control(self) -> list[Message]:
        data = self._control_socket().recv(_RECV)
        if not data:
            raise ZygoteError(f"the evaluation zygote died; see {self._scratch / 'zygote.log'}")
        try:
            return self._frames.feed(data)
        except ProtocolError as exc:
            raise ZygoteError(f"the evaluation zygote broke the protocol: {exc}") from exc

    def _next_control(self) -> Message:
        while True:
            messages = self._read_control()
            if messages:
                return messages[0]


class EvaluationStream:
    """Candidates handed to sandboxed evaluators one by one, while the caller breeds more.

    ::

        pool.stream()     forks ``stream_workers`` children now (one per core but the
                          caller's, unless ``workers`` was given): their fork and sandbox overlap
                          the caller's breeding; each is a batch that stays open
        submit(genome)    sends it to the open batch with the least work queued, and
                          reads what is ready; a batch that is full (``batch_size``, else
                          STREAM_BATCH candidates) is told to end, and a fresh one is forked
        results(...)      waits until every candidate submitted so far has its result and
                          records them (on_batch); the batches stay open for the next ones
        close()           ends the batches (kills any still running a candidate)

    The guarantees are the batch's (see the module docstring): each batch is
    one fresh sandboxed child that has run nothing before, and runs at most
    ``batch_size`` (else STREAM_BATCH) candidates; accounting is per candidate;
    a child that dies or hangs is charged to the candidate it was running and
    the rest run in a fresh child. Which batch a candidate joins changes
    nothing in its result. A candidate may read the child's socket and
    swallow the candidates queued behind it; like forging frames, that only
    spoils its own batch (the next one is charged a timeout).
    """

    def __init__(self, pool: EvaluatorPool) -> None:
        self._pool = pool
        self._capacity = pool._stream_capacity  # 1 for a two-phase task (see start())
        self._running: dict[int, _Batch] = {}
        self._pending: deque[tuple[list[Genome], int]] = deque()  # what dead children left
        self._submitted: set[str] = set()
        self._asked = 0  # submitted since the last results()
        for _ in range(pool.stream_workers):
            self._open()

    def submit(self, genome: Genome) -> None:
        """Queue ``genome`` for evaluation (once: a genome submitted before is ignored)."""
        if genome.id in self._submitted:
            return
        self._submitted.add(genome.id)
        self._asked += 1
        open_batches = [b for b in self._running.values() if _takes_more(b, self._capacity)]
        batch = min(open_batches, key=_queued, default=None) or self._open()
        batch.genomes.append(genome)
        batch.unsent.append(_genome_wire(genome))
        if len(batch.genomes) >= self._capacity:
            self._end(batch)
            if sum(1 for b in self._running.values() if b.accepting) < self._pool.stream_workers:
                self._open()  # its successor starts now, while breeding goes on
        elif len(batch.unsent) >= FRAME_CANDIDATES or len(batch.results) >= batch.sent:
            _send(batch, self._pool)  # a frame's worth, or the child has nothing to do
        if self._asked % PUMP_EVERY == 0:
            self._pool._wait(self._running, 0.0)

    def results(self, *, on_batch: BatchCallback | None = None,
                on_progress: ProgressCallback | None = None) -> dict[str, Evaluation]:
        """The evaluation of every genome submitted since the last call, by id.

        Each is recorded (``on_batch``) before this returns.
        """
        pool = self._pool
        found: dict[str, Evaluation] = {}
        for batch in self._running.values():
            _send(batch, pool)
        # Until everything sent has its result: open batches stay open for the next ones.
        pool._settle(self._pending, self._running, found, self._asked, on_batch, on_progress,
                     busy=lambda batch: bool(_queued(batch)) or _ended(batch))
        for batch in self._running.values():
            _record(batch, found, on_batch)
        if on_progress is not None:
            on_progress(self._asked, self._asked)
        self._asked = 0
        return found

    def close(self) -> None:
        """End every batch: idle children exit, one still running a candidate is killed."""
        for batch in self._running.values():
            if _queued(batch) and batch.exit is None:
                with contextlib.suppress(OSError, ZygoteError):
                    self._pool._kill(batch)
            self._end(batch)
            if not batch.eof:
                batch.eof = True
                _close(batch)
            shutil.rmtree(batch.scratch, ignore_errors=True)
        self._running.clear()
        self._pending.clear()

    def _open(self) -> _Batch:
        batch = self._pool._dispatch([], 0, stream=True)
        self._running[batch.id] = batch
        return batch

    def _end(self, batch: _Batch) -> None:
        if batch.accepting:
            batch.accepting = False
            _send(batch, self._pool)
            batch.outbox += encode_frame(Message(MessageType.SHUTDOWN, {}), MAX_FRAME)
            _flush(batch)


def _ended(batch: _Batch) -> bool:
    return batch.eof and batch.exit is not None


def _record(batch: _Batch, results: dict[str, Evaluation],
            on_batch: BatchCallback | None) -> None:
    """Hand the batch's results not recorded yet to ``results`` and ``on_batch``."""
    done = sorted(batch.results)[batch.recorded:]
    evaluations = [batch.results[i] for i in done]
    for evaluation in evaluations:
        results[evaluation.genome_id] = evaluation
    if on_batch is not None and evaluations:
        on_batch([batch.genomes[i] for i in done], evaluations)
    batch.recorded += len(done)


def _takes_more(batch: _Batch, capacity: int) -> bool:
    """Whether a streamed batch's child is alive, unspoiled and has room."""
    return batch.accepting and not (batch.eof or batch.exit or batch.killed_for
                                    or batch.stopped) and len(batch.genomes) < capacity


def _queued(batch: _Batch) -> int:
    return len(batch.genomes) - len(batch.results)


def _send(batch: _Batch, pool: EvaluatorPool) -> None:
    """Put the batch's unsent candidates in one frame on their way to its child."""
    if not batch.unsent or batch.eof or batch.exit is not None or batch.killed_for:
        return  # a child that is gone gets nothing more: _finish re-runs what it had left
    idle = batch.ready and batch.current is None and not batch.stopped
    batch.outbox += encode_frame(Message(MessageType.REQUEST, {"candidates": batch.unsent}),
                                 MAX_FRAME)
    batch.sent += len(batch.unsent)
    batch.unsent = []
    if idle:  # it waited for work: the first candidate's clock starts now
        batch.deadline = time.monotonic() + pool.timeout_s + WALL_GRACE_S
    _flush(batch)


def _flush(batch: _Batch) -> None:
    """Send what the child's socket takes now; the rest waits for the next select."""
    if not batch.outbox or batch.channel is None or batch.eof:
        return
    try:
        sent = batch.channel.send(batch.outbox)
    except BlockingIOError:
        return
    except OSError:  # the child is gone: what it never read is re-run by _finish
        batch.outbox.clear()
        batch.accepting = False
        return
    del batch.outbox[:sent]


def _close(batch: _Batch) -> None:
    if batch.channel is not None:
        batch.channel.close()
    else:
        os.close(batch.read_fd)


def _cpu_ticks(pid: int) -> int:
    """utime + stime + cutime + cstime of ``pid`` (fields 14-17 of proc(5)), in clock ticks."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(value) for value in fields[11:15])  # 11-14 after the name


def _chunks(items: list[Genome], size: int) -> list[list[Genome]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def _exit_words(exit_info: dict[str, Any] | None) -> str:
    if not exit_info:
        return "no exit status"
    if "message" in exit_info:  # an error report: it could not even be forked
        return f"could not fork it: {exit_info.get('kind')}: {exit_info.get('message')}"
    if exit_info.get("signal"):
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(exit_info['signal']).name}"
    return f"exit code {exit_info.get('exit_code')}"


def _tail(path: Path, offset: int, end: int | None = None) -> str:
    try:
        with path.open("rb") as handle:
            if end is None:
                end = handle.seek(0, os.SEEK_END)
            # only the last 16 KiB of the range: a chatty candidate may print gigabytes
            handle.seek(max(offset, end - 16384))
            text = handle.read(max(0, end - handle.tell())).decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-OUTPUT_TAIL_LINES:])
