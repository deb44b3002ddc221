"""Perception: notice a bottleneck and say what evolution should try to fix.

The first phase of the protected evolution cycle. The supervisor feeds the
monitor one observation per answered request (and one per piece of
feedback); the monitor keeps a rolling window per (version, handler) and,
when a health signal crosses its threshold, raises an :class:`Intent`::

    request answered ──► observe(version, latency_ms, error, rss_bytes) ─┐
    feedback stored  ──► observe_feedback(version, score) ───────────────┤
                                                                         ▼
              rolling windows per (version, handler): latency, errors, rss, feedback
                                                                         │
            p95 latency > p95_latency_ms │ error rate > error_rate       │
            rss grew > memory_growth     │ mean feedback < min_feedback  ▼
                                                         cooldown per (key, metric)?
                                                                         │
                          autonomy "off" ─► nothing       "propose" ─► Intent(action="propose")
                                                          "auto"    ─► Intent(action="start")

What the supervisor does with an intent is its business: ``"propose"``
records a proposed experiment a person approves, ``"start"`` starts one at
once (:meth:`Intent.experiment_body` gives the body of
``POST /v1/evolution/experiments`` for a chosen candidate). The monitor is
pure: no clock but the injected one, no I/O, no threads.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from project_o.errors import InvalidArgument

__all__ = [
    "AUTO",
    "AUTONOMY_MODES",
    "DEFAULT_COOLDOWN_S",
    "DEFAULT_ERROR_RATE",
    "DEFAULT_MEMORY_GROWTH",
    "DEFAULT_MIN_FEEDBACK",
    "DEFAULT_MIN_SAMPLES",
    "DEFAULT_P95_LATENCY_MS",
    "DEFAULT_WINDOW",
    "ERRORS",
    "FEEDBACK",
    "LATENCY",
    "MEMORY",
    "OFF",
    "PROPOSE",
    "HealthMonitor",
    "Intent",
    "Thresholds",
]

#: autonomy modes: ignore intents, record them for a person to approve, or act at once
OFF, PROPOSE, AUTO = "off", "propose", "auto"
AUTONOMY_MODES = (OFF, PROPOSE, AUTO)
#: what the supervisor should do with an intent, by autonomy mode
_ACTIONS = {PROPOSE: "propose", AUTO: "start"}

#: the metrics the monitor watches (names as in an Intent)
LATENCY, ERRORS, MEMORY, FEEDBACK = "p95_latency_ms", "error_rate", "memory_growth", "mean_feedback"
#: Intent metric -> the experiment metric that judges a fix (None: judge on all three)
_EXPERIMENT_METRIC: dict[str, str | None] = {
    LATENCY: "latency", ERRORS: "errors", FEEDBACK: "feedback", MEMORY: None,
}

#: a p95 over one second is a wait a person notices in an interactive agent
DEFAULT_P95_LATENCY_MS = 1000.0
#: one failed request in twenty: well above the noise of a healthy agent
DEFAULT_ERROR_RATE = 0.05
#: resident memory grew by half over one window while serving: a leak, not warm-up
DEFAULT_MEMORY_GROWTH = 0.5
#: users rate answers -1..1; a mean below -0.2 means more dislike than like
DEFAULT_MIN_FEEDBACK = -0.2
#: requests per rolling window (per version and handler)
DEFAULT_WINDOW = 200
#: samples before a signal is trusted: 50, as the canary's minimum per arm
DEFAULT_MIN_SAMPLES = 50
#: feedback is sparse; this many scores make a mean worth acting on
DEFAULT_MIN_FEEDBACK_SAMPLES = 10
#: one intent per (version, handler, metric) per five minutes: an experiment takes
#: minutes, so a new intent sooner would only repeat the one being tested
DEFAULT_COOLDOWN_S = 300.0


@dataclass(frozen=True)
class Thresholds:
    """When the monitor raises an intent; every field has a named default above."""

    p95_latency_ms: float = DEFAULT_P95_LATENCY_MS
    error_rate: float = DEFAULT_ERROR_RATE
    memory_growth: float = DEFAULT_MEMORY_GROWTH
    min_feedback: float = DEFAULT_MIN_FEEDBACK
    window: int = DEFAULT_WINDOW
    min_samples: int = DEFAULT_MIN_SAMPLES
    min_feedback_samples: int = DEFAULT_MIN_FEEDBACK_SAMPLES
    cooldown_s: float = DEFAULT_COOLDOWN_S

    def __post_init__(self) -> None:
        for name in ("p95_latency_ms", "error_rate", "memory_growth", "cooldown_s"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise InvalidArgument(f"threshold {name} must be a finite number >= 0, "
                                      f"got {value!r}")
        if not -1.0 <= self.min_feedback <= 1.0:
            raise InvalidArgument(f"min_feedback must be in -1..1 (the feedback scale), "
                                  f"got {self.min_feedback!r}")
        if not 1 <= self.min_samples <= self.window or self.min_feedback_samples < 1:
            raise InvalidArgument(
                f"need 1 <= min_samples <= window and min_feedback_samples >= 1, got "
                f"min_samples={self.min_samples}, window={self.window}, "
                f"min_feedback_samples={self.min_feedback_samples}"
            )


@dataclass(frozen=True)
class Intent:
    """A bottleneck worth an experiment: what was seen, against what threshold."""

    hypothesis: str
    metric: str
    observed: float
    threshold: float
    version: str
    handler: str
    action: str
    samples: int
    at: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-able, as the ``evolution_intent`` frame and the catalog carry it."""
        return asdict(self)

    def experiment_body(self, candidate: Mapping[str, Any], *,
                        kind: str = "shadow") -> dict[str, Any]:
        """The body of ``POST /v1/evolution/experiments`` testing ``candidate`` as a fix."""
        body: dict[str, Any] = {"kind": kind, "candidate": dict(candidate),
                                "hypothesis": self.hypothesis}
        metric = _EXPERIMENT_METRIC[self.metric]
        if metric is not None:
            body["metric"] = metric
        return body


@dataclass
class _Window:
    """The rolling samples of one (version, handler)."""

    size: int
    latency: deque[float] = field(init=False)
    errors: deque[bool] = field(init=False)
    rss: deque[int] = field(init=False)
    feedback: deque[float] = field(init=False)

    def __post_init__(self) -> None:
        self.latency, self.errors = deque(maxlen=self.size), deque(maxlen=self.size)
        self.rss, self.feedback = deque(maxlen=self.size), deque(maxlen=self.size)


class HealthMonitor:
    """Rolling health windows per (version, handler) that raise :class:`Intent` s."""

    def __init__(self, thresholds: Thresholds | None = None, *, autonomy: str = PROPOSE,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.thresholds = thresholds or Thresholds()
        self.autonomy = _check_autonomy(autonomy)
        self._clock = clock
        self._windows: dict[tuple[str, str], _Window] = {}
        self._last_intent: dict[tuple[str, str, str], float] = {}

    def set_autonomy(self, autonomy: str) -> None:
        """Switch between ``"off"``, ``"propose"`` and ``"auto"`` (takes effect at once)."""
        self.autonomy = _check_autonomy(autonomy)

    def observe(self, version: str, latency_ms: float, *, error: bool = False,
                rss_bytes: int | None = None, handler: str = "handle") -> list[Intent]:
        """Record one answered request; return the intents it raised (usually none)."""
        if not (isinstance(latency_ms, int | float) and math.isfinite(latency_ms)
                and latency_ms >= 0):
            raise InvalidArgument(f"latency_ms must be a finite number >= 0, got {latency_ms!r}")
        window = self._window(version, handler)
        window.latency.append(float(latency_ms))
        window.errors.append(bool(error))
        if rss_bytes is not None:
            window.rss.append(int(rss_bytes))
        return self._check(version, handler, (LATENCY, ERRORS, MEMORY))

    def observe_feedback(self, version: str, score: float, *,
                         handler: str = "handle") -> list[Intent]:
        """Record a user's score (-1..1) of an answer ``version`` gave; the intents raised."""
        if not (isinstance(score, int | float) and -1.0 <= score <= 1.0):
            raise InvalidArgument(f"feedback score must be a number in -1..1, got {score!r}")
        self._window(version, handler).feedback.append(float(score))
        return self._check(version, handler, (FEEDBACK,))

    def health(self, version: str, handler: str = "handle") -> dict[str, Any]:
        """The current signals of one window (None where there are too few samples)."""
        window = self._windows.get((version, handler)) or _Window(self.thresholds.window)
        return {"requests": len(window.latency), "feedback": len(window.feedback),
                **{metric: self._signal(window, metric) for metric in
                   (LATENCY, ERRORS, MEMORY, FEEDBACK)}}

    def forget(self, version: str) -> None:
        """Drop the windows of a version that no longer serves (rolled back, retired)."""
        for key in [k for k in self._windows if k[0] == version]:
            del self._windows[key]

    # -- the checks -----------------------------------------------------

    def _window(self, version: str, handler: str) -> _Window:
        key = (version, handler)
        if key not in self._windows:
            self._windows[key] = _Window(self.thresholds.window)
        return self._windows[key]

    def _check(self, version: str, handler: str, metrics: tuple[str, ...]) -> list[Intent]:
        if self.autonomy == OFF:
            return []
        window = self._windows[(version, handler)]
        intents = []
        for metric in metrics:
            if self._cooling(version, handler, metric) or self._none_above(window, metric):
                continue  # cheap first: this runs on every request the supervisor serves
            observed = self._signal(window, metric)
            if observed is not None and self._crossed(metric, observed):
                self._last_intent[(version, handler, metric)] = self._clock()
                intents.append(self._intent(version, handler, metric, observed, window))
        return intents

    def _signal(self, window: _Window, metric: str) -> float | None:
        t = self.thresholds
        if metric == FEEDBACK:
            scores = window.feedback
            return sum(scores) / len(scores) if len(scores) >= t.min_feedback_samples else None
        if len(window.latency) < t.min_samples:
            return None
        if metric == LATENCY:
            return _percentile(window.latency, 0.95)
        if metric == ERRORS:
            return sum(window.errors) / len(window.errors)
        return _growth(window.rss) if len(window.rss) >= t.min_samples else None

    def _none_above(self, window: _Window, metric: str) -> bool:
        """No latency in the window is over the threshold, so neither is its p95.

        One pass in C instead of sorting the window on every answer.
        """
        return (metric == LATENCY and bool(window.latency)
                and max(window.latency) <= self.thresholds.p95_latency_ms)

    def _crossed(self, metric: str, observed: float) -> bool:
        if metric == FEEDBACK:
            return observed < self.thresholds.min_feedback
        return observed > self._threshold(metric)

    def _threshold(self, metric: str) -> float:
        t = self.thresholds
        return {LATENCY: t.p95_latency_ms, ERRORS: t.error_rate, MEMORY: t.memory_growth,
                FEEDBACK: t.min_feedback}[metric]

    def _cooling(self, version: str, handler: str, metric: str) -> bool:
        """An intent for this metric was raised less than a cooldown ago."""
        last = self._last_intent.get((version, handler, metric))
        return last is not None and self._clock() - last < self.thresholds.cooldown_s

    def _intent(self, version: str, handler: str, metric: str, observed: float,
                window: _Window) -> Intent:
        threshold = self._threshold(metric)
        samples = len(window.feedback if metric == FEEDBACK else window.latency)
        return Intent(
            hypothesis=_HYPOTHESES[metric].format(handler=handler, observed=observed,
                                                  threshold=threshold, samples=samples),
            metric=metric, observed=observed, threshold=threshold, version=version,
            handler=handler, action=_ACTIONS[self.autonomy], samples=samples, at=self._clock(),
        )


_HYPOTHESES = {
    LATENCY: "{handler} is slow (p95 {observed:.1f} ms > {threshold:g} ms over {samples} "
             "requests): a faster implementation should cut latency",
    ERRORS: "{handler} fails too often ({observed:.1%} of {samples} requests > "
            "{threshold:.1%}): a fixed implementation should fail less",
    MEMORY: "{handler} leaks memory (resident size grew {observed:.0%} > {threshold:.0%} over "
            "{samples} requests): an implementation that keeps less should stay flat",
    FEEDBACK: "users dislike {handler}'s answers (mean feedback {observed:+.2f} < "
              "{threshold:+.2f} over {samples} scores): a different approach should rate higher",
}


def _percentile(values: deque[float], q: float) -> float:
    """Nearest-rank percentile (no interpolation: a window's p95 is a latency it saw)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


def _growth(rss: deque[int]) -> float:
    """Relative growth from the oldest quarter of the window to the newest (medians).

    Medians of quarters, not first and last samples, so one page-cache blip
    or a garbage collection does not read as a leak.
    """
    quarter = max(1, len(rss) // 4)
    samples = list(rss)
    old, new = _median(samples[:quarter]), _median(samples[-quarter:])
    return (new - old) / old if old > 0 else 0.0


def _median(values: list[int]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return float(ordered[middle]) if len(ordered) % 2 else (ordered[middle - 1]
                                                            + ordered[middle]) / 2.0


def _check_autonomy(autonomy: str) -> str:
    if autonomy not in AUTONOMY_MODES:
        raise InvalidArgument(f"autonomy must be one of {AUTONOMY_MODES}, got {autonomy!r}")
    return autonomy
