"""Cascade evaluation: cheap stages first; a candidate below a stage's threshold stops there.

A task file may list its stages, cheapest first, each but the last with
the score a candidate needs to go on::

    def quick(agent):                     # e.g. the error on three points
        return {"score": ...}

    def evaluate(agent):                  # the full test
        return {"score": ...}

    STAGES = [(quick, -1.0), (evaluate, None)]     # or dicts: {"evaluate", "threshold", "name"}

(``evaluate`` may then be left out: the last stage is the task's evaluate.)

How one candidate runs through them (in the evaluator child, under the one
alarm of its timeout, with the tamper check after every stage)::

    stage 1 ─► score >= threshold 1? ──no──► stop: result of stage 1, "stage": 1
       │ yes
    stage 2 ─► ... ─► last stage: its result, "stage": len(STAGES)

The result is the last stage's metrics plus ``stage`` (the number reached,
from 1) and ``stage_name``. A stopped candidate keeps its stage score as its
fitness, but ranks below every candidate that went further
(:attr:`~project_o.evolution.task.Evaluation.merit` is (stage, fitness)):
a cheap stage's score need not be on the final stage's scale. The process that runs the evolution never
trusts the child's account: it knows the thresholds from the zygote (read
before any candidate ran) and calls a result whose stage scores do not
agree with them "gamed" (:func:`stage_problem`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from project_o.errors import InvalidArgument

__all__ = ["STAGE_KEYS", "Stage", "load_stages", "passes", "stage_problem", "wire_stages"]

#: the metrics the cascade sets on a result; a task may not set them itself
STAGE_KEYS: Final = ("stage", "stage_name")

#: a stage as the zygote tells the evolution's process: (name, threshold or None)
WireStage = tuple[str, float | None]


@dataclass(frozen=True)
class Stage:
    """One step of a cascade: a scoring function and the score needed to go on."""

    name: str
    evaluate: Callable[[Any], Any]
    threshold: float | None = None


def load_stages(module: Any, evaluate: Any) -> tuple[Stage, ...]:
    """The task module's ``STAGES``, checked; one stage of ``evaluate`` when it has none."""
    raw = getattr(module, "STAGES", None)
    if raw is None:
        return (Stage("evaluate", evaluate),)
    if isinstance(raw, str | bytes | Mapping) or not isinstance(raw, Sequence) or not raw:
        raise InvalidArgument(f"STAGES must be a non-empty list of (function, threshold), "
                              f"got {raw!r:.120}")
    stages = tuple(_stage(item, number) for number, item in enumerate(raw, 1))
    for stage in stages[:-1]:
        if stage.threshold is None:
            raise InvalidArgument(f"stage {stage.name!r} needs a threshold: only the last "
                                  "stage may have none")
    return stages


def _stage(item: Any, number: int) -> Stage:
    if isinstance(item, Mapping):
        function, threshold = item.get("evaluate"), item.get("threshold")
        name = item.get("name")
    elif isinstance(item, Sequence) and len(item) == 2:
        (function, threshold), name = item, None
    else:
        raise InvalidArgument(f"stage {number} must be (function, threshold) or a dict with "
                              f"'evaluate' and 'threshold', got {item!r:.120}")
    if not callable(function):
        raise InvalidArgument(f"stage {number}'s evaluate is not a function: {function!r:.80}")
    if threshold is not None and not (_number(threshold) and math.isfinite(threshold)):
        raise InvalidArgument(f"stage {number}'s threshold must be a finite number or None, "
                              f"got {threshold!r:.80}")
    label = str(name or getattr(function, "__name__", f"stage{number}"))
    return Stage(label, function, None if threshold is None else float(threshold))


def wire_stages(stages: Sequence[Stage]) -> list[list[Any]]:
    """``[[name, threshold], ...]``: what the evolution's process needs to check results."""
    return [[stage.name, stage.threshold] for stage in stages]


def passes(metrics: Any, threshold: float | None) -> bool:
    """Whether a stage's result lets the candidate go on to the next stage."""
    if threshold is None:
        return True
    score = metrics.get("score") if isinstance(metrics, Mapping) else None
    return isinstance(score, int | float) and not isinstance(score, bool) \
        and math.isfinite(score) and score >= threshold


def stage_problem(reached: Any, scores: Any, stages: Sequence[WireStage],
                  score: float) -> str | None:
    """Why a child's account of its cascade cannot be true, or ``None`` if it can.

    ``reached`` is the stage number it stopped at, ``scores`` the score of each
    stage it ran, the last one being ``score`` (the result's): every stage before
    the last one run must have passed, and a candidate that stopped early must
    have failed the stage it stopped at.
    """
    if not isinstance(reached, int) or isinstance(reached, bool) \
            or not 1 <= reached <= len(stages):
        return f"reported stage {reached!r:.40}; the task has stages 1..{len(stages)}"
    if isinstance(scores, str | bytes) or not isinstance(scores, Sequence) \
            or len(scores) != reached:
        return f"reported {reached} stages but the scores {scores!r:.80}"
    if scores[-1] != score:
        return f"reported stage score {scores[-1]!r:.40} but the result's score {score!r}"
    for (name, threshold), passed in zip(stages[:reached - 1], scores, strict=False):
        if not passes({"score": passed}, threshold):
            return f"went on past stage {name!r} with score {passed!r} below its {threshold}"
    name, threshold = stages[reached - 1]
    if reached < len(stages) and passes({"score": scores[-1]}, threshold):
        return f"stopped at stage {name!r} with score {scores[-1]!r}, which passes its {threshold}"
    return None


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
