"""The zygote program whose children evaluate a batch of candidates on a task.

``python -m project_o.runtime.zygote --program project_o.evolution.evaluator:load --task T``

Loaded once in the zygote: the task module imported (its score bounds go
in the hello). Each fork request is one batch, run by one child after the
sandbox (:func:`project_o.runtime.zygote.enter_child`), its output in the
batch's scratch directory::

    fork {id, scratch, timeout, limits, candidates: [{id, sources, params}], stream}
         + the child's end of a socketpair
    child ══► hello                                  (ready: sandboxed, nothing run yet)
          stream: ◄══ request {candidates} ... shutdown   (more candidates while the pool
                                                           breeds them; then the end)
          for each candidate: load (from memory) + evaluate(agent), alarm
          ══► response {index, metrics|failure, time, cpu, rss,
                        offset: where the next one's output starts in output.log}

A candidate that tampers with the task (:mod:`.tamper`) ends the batch:
the rest run in a fresh child. :class:`~.population.EvaluatorPool` is the
other side.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Final

from project_o.errors import InvalidArgument
from project_o.evolution.cascade import wire_stages
from project_o.evolution.genome import Genome
from project_o.evolution.tamper import Snapshot
from project_o.evolution.task import Task, evaluate_in_process, load_task
from project_o.runtime.child import ChildPlan
from project_o.runtime.sandbox import Limits
from project_o.wire import FrameDecoder, Message, MessageType, encode_frame

__all__ = ["EVALUATOR_PROGRAM", "OUTPUT_LOG", "EvaluationProgram", "load"]

#: how a zygote names this program (``--program``)
EVALUATOR_PROGRAM: Final = "project_o.evolution.evaluator:load"
#: in a batch's scratch directory: its child's stdout and stderr
OUTPUT_LOG: Final = "output.log"
#: a streamed candidate's frame: the pool's limit on frames it sends
MAX_STREAM_FRAME: Final = 64 << 20
_RECV: Final = 1 << 16


class EvaluationProgram:
    """Forks one evaluator child per batch of candidates."""

    def __init__(self, task: Task) -> None:
        self._task = task

    def hello(self) -> dict[str, Any]:
        """The task's score bounds and cascade: the pool checks every result against them.

        ``phases: 2`` for a two-phase task: the pool scores its outputs itself.
        """
        return {"bounds": list(self._task.score_bounds), "stages": wire_stages(self._task.stages),
                "phases": 2 if self._task.two_phase else 1}

    def plan(self, request: dict[str, Any]) -> ChildPlan:
        """Check a batch request: scratch directory, timeout, limits, candidates."""
        scratch, timeout = request.get("scratch"), request.get("timeout")
        candidates = request.get("candidates")
        if not isinstance(scratch, str) or not isinstance(timeout, (int, float)) or not (
            isinstance(candidates, list) and all(isinstance(c, dict) for c in candidates)
        ):
            raise InvalidArgument("a batch needs scratch (str), timeout (number) and "
                                  "candidates (a list of maps)")
        return ChildPlan(Limits.from_dict(request.get("limits")), request,
                         output=str(Path(scratch) / OUTPUT_LOG))

    def run(self, plan: ChildPlan, channel_fd: int) -> int:
        """Evaluate the batch's candidates in order, reporting each on ``channel_fd``."""
        _run_batch(channel_fd, plan.work, self._task)
        return 0


def load(argv: Sequence[str]) -> EvaluationProgram:
    """Import the task named on the command line (``--task PATH``)."""
    parser = argparse.ArgumentParser(prog="evaluator program")
    parser.add_argument("--task", required=True)
    return EvaluationProgram(load_task(parser.parse_args(argv).task))


def _run_batch(fd: int, request: dict[str, Any], task: Task) -> None:
    guard = Snapshot(task.module)  # before any candidate code has run in this process
    scratch = Path(request["scratch"])
    _write_all(fd, encode_frame(Message(MessageType.HELLO, {})))
    candidates = _streamed(fd, request) if request.get("stream") else request["candidates"]
    for index, wire in enumerate(candidates):
        genome = Genome(wire["sources"], wire["params"])
        raw = evaluate_in_process(task, genome, scratch, float(request["timeout"]), guard)
        sys.stdout.flush()
        sys.stderr.flush()
        _write_all(fd, encode_frame(Message(MessageType.RESPONSE, {
            "index": index, "offset": os.lseek(1, 0, os.SEEK_END), **raw})))
        if raw["tampered"]:
            return  # this process is no longer the evaluator it was: the rest get a fresh one


def _streamed(fd: int, request: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """A streamed batch's candidates as the pool sends them: request frames until shutdown."""
    yield from request["candidates"]
    frames = FrameDecoder(MAX_STREAM_FRAME)
    while True:
        data = os.read(fd, _RECV)
        if not data:
            return  # the pool is gone
        for message in frames.feed(data):
            if message.type == MessageType.SHUTDOWN:
                return
            if message.type != MessageType.REQUEST:
                raise InvalidArgument(f"a streamed batch takes request frames, got "
                                      f"{str(message.type)!r}")
            yield from message.data["candidates"]


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
