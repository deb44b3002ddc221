"""Perception, wired in: the health monitor watches the metrics, off the request path.

::

    SupervisorMetrics ── RequestSeen / FeedbackSeen ──► Perception.observe
                                                          │ (not while an experiment
                                                          │  routes traffic: those
                                                          │  requests are its samples)
                                                          ▼
                                  HealthMonitor (project_o.evolution.perception)
                                                          │ Intent
                                                          ▼
                           event "intent" ──► act(intent): evolution control proposes
                                              or starts an experiment, as autonomy says

A request is counted by the metrics after it was answered, so perception
adds nothing to the path a request takes. It also writes the LLM
operator's brief: the hypothesis, this version's health, recent failures.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from project_o.evolution.operators.llm_rewrite import RewriteBrief
from project_o.evolution.perception import HealthMonitor, Intent
from project_o.supervisor.events import EventLog
from project_o.supervisor.metrics import FeedbackSeen, Observation, RequestSeen

__all__ = ["PERCEIVED_OUTCOMES", "Perception"]

#: request outcomes the monitor sees, and whether each is an error; a request no
#: instance was ready for, or one the client cancelled, says nothing of the version
PERCEIVED_OUTCOMES = {"ok": False, "failed": True, "timeout": True, "poison": True}
#: the event kinds an LLM brief lists as recent failures
_FAILURE_KINDS = ("crash", "hang", "quarantine")


class Perception:
    """Feeds the health monitor from the metrics and hands its intents to ``act``."""

    def __init__(self, monitor: HealthMonitor, events: EventLog, *,
                 act: Callable[[Intent], None], busy: Callable[[], bool]) -> None:
        self.monitor, self.events = monitor, events
        self._act, self._busy = act, busy

    def observe(self, seen: Observation) -> None:
        """A metrics subscriber: one request or one feedback, unless an experiment routes."""
        if self._busy():
            return
        if isinstance(seen, FeedbackSeen):
            self._perceive(self.monitor.observe_feedback(seen.version, seen.score))
        elif isinstance(seen, RequestSeen) and seen.outcome in PERCEIVED_OUTCOMES:
            self._perceive(self.monitor.observe(seen.version, seen.seconds * 1000,
                                                error=PERCEIVED_OUTCOMES[seen.outcome]))

    def brief(self, hypothesis: str, version: str) -> RewriteBrief:
        """The LLM's brief, built from our own records only: never the environment or secrets."""
        failures = [f"{e['kind']}: {e['reason']}" for e in self.events.recent(50)
                    if e["kind"] in _FAILURE_KINDS][-10:]
        return RewriteBrief(hypothesis, self.monitor.health(version), failures)

    def _perceive(self, intents: Sequence[Intent]) -> None:
        for intent in intents:
            self.events.record("intent", intent.version, intent.hypothesis,
                               metric=intent.metric, observed=intent.observed,
                               threshold=intent.threshold, action=intent.action)
            if not self._busy():  # one experiment at a time; the cooldown brings it back
                self._act(intent)
