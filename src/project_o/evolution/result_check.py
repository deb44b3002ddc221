"""Strict checks of an evaluator child's result frame, before anything in it is believed.

The child runs candidate code, and candidate code can write to its result
pipe, so every ``response`` frame is read as hostile::

    response {index, offset, tampered, time_s, cpu_s, memory_kb,
              metrics | failure | outputs, [stage, stage_scores]}
      index       exactly the running candidate's (an int, not a bool that equals 1)
      offset      an int >= 0, not before the previous one
      tampered    a bool
      time_s ...  finite numbers >= 0 (memory_kb an int)
      failure     None, or a map: kind one of FAILURE_KINDS, reason a str
      metrics     None, a map with str keys, or a str (what a task returned that was no dict)
      outputs     two-phase tasks only: present exactly when there is no failure
      no other key

:func:`result_problem` names the first thing wrong, or returns None. A
frame with a problem is the running candidate's failure (the pool charges
it, kills the batch, and never lets it fail the run).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final

from project_o.evolution.task import FAILURE_KINDS

__all__ = ["RESULT_KEYS", "result_problem"]

#: every key a result frame may hold
RESULT_KEYS: Final = frozenset({
    "index", "offset", "tampered", "time_s", "cpu_s", "memory_kb", "metrics", "failure",
    "outputs", "stage", "stage_scores",
})
_REQUIRED: Final = ("index", "offset", "tampered", "time_s", "cpu_s", "memory_kb")


def result_problem(data: Mapping[str, Any], expected_index: int, *, previous_offset: int = 0,
                   two_phase: bool = False) -> str | None:
    """What is wrong with a result frame for candidate ``expected_index``; None if nothing."""
    index = data.get("index")
    if type(index) is not int or index != expected_index:
        return f"answered for candidate {_short(index)}, while {expected_index} was running"
    extra = sorted(str(key)[:40] for key in set(data) - RESULT_KEYS)
    missing = [key for key in _REQUIRED if key not in data]
    if extra or missing:
        return f"result fields wrong: unexpected {extra}, missing {missing}"
    return (_measured_problem(data, previous_offset) or _failure_problem(data.get("failure"))
            or _body_problem(data, two_phase))


def _measured_problem(data: Mapping[str, Any], previous_offset: int) -> str | None:
    offset = data["offset"]
    if type(offset) is not int or offset < previous_offset:
        return f"offset must be an int >= {previous_offset}, got {_short(offset)}"
    if type(data["tampered"]) is not bool:
        return f"tampered must be a bool, got {_short(data['tampered'])}"
    for key in ("time_s", "cpu_s", "memory_kb"):
        value = data[key]
        if type(value) not in (int, float) or not math.isfinite(value) or value < 0:
            return f"{key} must be a finite number >= 0, got {_short(value)}"
    if type(data["memory_kb"]) is not int:
        return f"memory_kb must be an int, got {_short(data['memory_kb'])}"
    stage, scores = data.get("stage"), data.get("stage_scores")
    if stage is not None and type(stage) is not int:
        return f"stage must be an int, got {_short(stage)}"
    if scores is not None and not isinstance(scores, list):
        return f"stage_scores must be a list, got {_short(scores)}"
    return None


def _failure_problem(failure: Any) -> str | None:
    if failure is None:
        return None
    if not isinstance(failure, dict) or failure.get("kind") not in FAILURE_KINDS \
            or not isinstance(failure.get("reason"), str):
        return (f"failure must be a map with kind one of {list(FAILURE_KINDS)} and a str "
                f"reason, got {_short(failure)}")
    if not all(isinstance(key, str) for key in failure):
        return "failure keys must be str"
    return None


def _body_problem(data: Mapping[str, Any], two_phase: bool) -> str | None:
    metrics, failed = data.get("metrics"), data.get("failure") is not None
    if not (metrics is None or isinstance(metrics, str) or (
            isinstance(metrics, dict) and all(isinstance(key, str) for key in metrics))):
        return f"metrics must be a map with str keys, got {_short(metrics)}"
    if not two_phase:
        return "outputs come only from a two-phase task" if "outputs" in data else None
    if metrics is not None:
        return "a two-phase task's evaluator sends outputs, never metrics: the parent scores"
    if failed == ("outputs" in data):
        return "a two-phase result holds outputs exactly when it holds no failure"
    return None


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."
