"""What a model is shown of how the parent did: its artifacts.

::

    Evaluation(metrics, failure)
      ├─ ok:      score, the task's metrics, and what the task reported in
      │           metrics["artifacts"]   {"failing_cases": "...", "hint": "..."}  (text)
      └─ failed:  kind, reason, the exception's traceback, the candidate's
                  stdout/stderr tail ("output")
                      │ artifacts_of()
                      ▼
    {"outcome": "ok" | kind, "score": ..., "reason", "traceback", "output",
     "metrics": "...", "artifact:failing_cases": ...}  ─► the prompt's "Parent's artifacts"

A task reports failing cases (or any other evidence) by returning an
``"artifacts"`` mapping beside ``"score"``; the evaluator keeps each value
as text, at most ``task.MAX_ARTIFACT_CHARS`` characters (the end, where a
traceback or a list's last cases are), and so does every field here.
"""

from __future__ import annotations

import json
from typing import Final

from project_o.evolution.task import ARTIFACTS_KEY, Evaluation, clip_text

__all__ = ["artifacts_of"]

#: failure fields shown, in this order
_FAILURE_FIELDS: Final = ("reason", "traceback", "output")


def artifacts_of(evaluation: Evaluation | None) -> dict[str, str]:
    """The parent's artifacts, as named text (empty when it has no evaluation)."""
    if evaluation is None:
        return {}
    out = {"outcome": evaluation.kind}
    if evaluation.failure is not None:
        for name in _FAILURE_FIELDS:
            value = evaluation.failure.get(name)
            if value:
                out[name] = clip_text(value)
    else:
        out["score"] = repr(evaluation.fitness)
    metrics = {k: v for k, v in evaluation.metrics.items() if k not in (ARTIFACTS_KEY, "score")}
    if metrics:
        out["metrics"] = clip_text(json.dumps(metrics, sort_keys=True, default=repr))
    reported = evaluation.metrics.get(ARTIFACTS_KEY)
    if isinstance(reported, dict):
        out.update({f"artifact:{k}": clip_text(v) for k, v in reported.items()})
    elif reported is not None:
        out["artifact"] = clip_text(reported)
    return out
