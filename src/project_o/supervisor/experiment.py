"""One experiment of the protected evolution cycle: its settings, its statistics, its story.

::

    ExperimentSpec.from_body(POST body)        what to test and how (defaults: docs/design.md)
    Experiment(spec, candidate, baseline)
        .enter(Stage.CANARY, detail, share)    the next stage (sample counts restart)
        .record(arm, latency_ms, error)        one answered request of an arm
        .record_feedback(arm, score)           a user's score of an answer of that arm
        .record_agreement(same)                mirror mode: did the shadow answer like the main
        .worse() / .better() / .no_improvement()   what the sequential tests say
        .event(event, detail)                  the timeline (every decision has its reason)
        .to_dict()                             GET /v1/evolution/experiments/{id}
        .stats()                               the catalog's experiments.stats JSON

Arms are ``"baseline"`` (the serving version) and ``"candidate"``. Each
metric is a :class:`~project_o.evolution.stats.SequentialTest`: latency (ms,
lower is better), errors (bernoulli, lower is better), feedback (scores -1..1,
higher is better) and, in mirror mode, agreement (the candidate's answer
equals the main's; the baseline agrees with itself by definition).

Stages are a :class:`Stage`; a canary stage also has its share of real
traffic, shown as ``canary-50`` in the API and the catalog (a name for
people, never parsed back). What an experiment learns from arrives as a
:data:`Sample` (see :mod:`project_o.supervisor.experiment_run`), and how it
ends is a :class:`Verdict`.

Also the errors the experiment API raises; each carries its HTTP status.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from project_o.errors import (  # re-exported: they used to live here
    CandidateInvalid,
    ExperimentConflict,
    InvalidArgument,
    UnknownExperiment,
)
from project_o.evolution.stats import (
    BASELINE,
    BETTER,
    CANDIDATE,
    DEFAULT_MIN_SAMPLES,
    EQUAL,
    WORSE,
    SequentialTest,
)

__all__ = [
    "DEFAULT_LATENCY_MARGIN",
    "DEFAULT_SHARE",
    "DEFAULT_STAGES",
    "METRICS",
    "Answered",
    "CandidateInvalid",
    "Compared",
    "Experiment",
    "ExperimentConflict",
    "ExperimentSpec",
    "Failed",
    "Rated",
    "Sample",
    "Stage",
    "UnknownExperiment",
    "Verdict",
    "Watched",
]

#: shadow share: one request in ten is mirrored to the candidate
DEFAULT_SHARE = 0.1
#: canary stages: 10% -> 50% -> 100% of real traffic, each decided on its own samples
DEFAULT_STAGES = (0.1, 0.5, 1.0)
#: per arm, after which "no decision" means "no improvement" (docs/design.md, "Evolution cycle")
DEFAULT_MAX_SAMPLES = 500
#: how much faster (share of the baseline's mean latency) a candidate must be, with
#: confidence, to count as better on latency: smaller gaps are as likely to be the
#: fresh candidate process against the long-running main as a better version
DEFAULT_LATENCY_MARGIN = 0.05
#: requests the promoted version serves under watch before it is trusted
DEFAULT_VALIDATION_REQUESTS = 50
#: the metrics a canary decides on, unless the experiment names one
METRICS = ("latency", "errors", "feedback")
#: a mirror-mode metric on top of METRICS
AGREEMENT = "agreement"
KINDS = ("shadow", "canary")
MODES = ("mirror", "split")
CANDIDATE_KEYS = ("source", "files", "operator")
#: timeline entries kept per experiment (a long canary must not grow without end)
MAX_TIMELINE = 500


class Stage(enum.Enum):
    """Where an experiment is, in the order it gets there."""

    #: compiled, params checked, imported in its own zygote, quick checks run
    VALIDATING = "validating"
    #: a share of requests mirrored to (or split with) a throwaway instance
    SHADOW = "shadow"
    #: a share of real traffic, with real writes; the share is Experiment.share
    CANARY = "canary"
    #: promoted, and serving every request under watch
    VALIDATION = "validation"
    #: decided; nothing is routed to the candidate any more
    DONE = "done"


@dataclass(frozen=True)
class Verdict:
    """How an experiment ended: catalog status, decision, and the reason in words."""

    status: str
    decision: str
    reason: str

    @classmethod
    def reject(cls, reason: str) -> Verdict:
        """The candidate never served real traffic and never will."""
        return cls("rejected", "reject", reason)

    @classmethod
    def rollback(cls, reason: str) -> Verdict:
        """The candidate served real traffic; the baseline serves again."""
        return cls("rolled_back", "rollback", reason)

    @classmethod
    def promote(cls, reason: str) -> Verdict:
        """The candidate is the serving version now."""
        return cls("promoted", "promote", reason)


@dataclass(frozen=True)
class Answered:
    """One request answered by ``arm`` (``error``: the handler raised)."""

    arm: str
    latency_ms: float
    error: bool


@dataclass(frozen=True)
class Compared:
    """Mirror mode: whether the shadow's answer equals the main's."""

    same: bool


@dataclass(frozen=True)
class Rated:
    """A user's score (-1..1) of an answer ``version`` gave."""

    version: str
    score: float


@dataclass(frozen=True)
class Failed:
    """The candidate (or, after promotion, the serving candidate) died or hung."""

    reason: str


@dataclass(frozen=True)
class Watched:
    """After promotion: one request the promoted version served (``error``: it failed)."""

    error: bool


#: what an experiment learns from, one at a time, through its queue
Sample = Answered | Compared | Rated | Failed | Watched


@dataclass(frozen=True)
class ExperimentSpec:
    """What to test and how: the body of ``POST /v1/evolution/experiments``."""

    kind: str
    candidate: dict[str, Any]
    hypothesis: str = ""
    params: dict[str, Any] | None = None
    mode: str = "mirror"
    share: float = DEFAULT_SHARE
    stages: tuple[float, ...] = DEFAULT_STAGES
    min_samples: int = DEFAULT_MIN_SAMPLES
    max_samples: int = DEFAULT_MAX_SAMPLES
    metric: str | None = None
    validation_requests: int = DEFAULT_VALIDATION_REQUESTS
    promote_equal: bool = False
    seed: int | None = None
    latency_margin: float = DEFAULT_LATENCY_MARGIN

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> ExperimentSpec:
        """Build and check a spec from a JSON body; raises InvalidArgument saying what is wrong."""
        values = {k: v for k, v in body.items() if v is not None}
        if "stages" in values:
            values["stages"] = tuple(float(s) for s in values["stages"])
        spec = cls(**values)
        spec._check()
        return spec

    def _check(self) -> None:
        if self.kind not in KINDS:
            raise InvalidArgument(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.mode not in MODES:
            raise InvalidArgument(f"mode must be one of {MODES}, got {self.mode!r}")
        given = [k for k in CANDIDATE_KEYS if k in self.candidate]
        if len(given) != 1 and not (not given and self.params):
            raise InvalidArgument(
                f"candidate must hold exactly one of {CANDIDATE_KEYS} (or params alone), "
                f"got {sorted(self.candidate)}")
        if not 0.0 < self.share <= 1.0:
            raise InvalidArgument(f"share must be in (0, 1], got {self.share}")
        if not self.stages or any(not 0.0 < s <= 1.0 for s in self.stages) or list(
                self.stages) != sorted(self.stages):
            raise InvalidArgument(f"stages must be increasing shares in (0, 1], got "
                                  f"{list(self.stages)}")
        if not 2 <= self.min_samples <= self.max_samples:
            raise InvalidArgument("need 2 <= min_samples <= max_samples, got "
                                  f"{self.min_samples} and {self.max_samples}")
        if self.metric is not None and self.metric not in METRICS:
            raise InvalidArgument(f"metric must be one of {METRICS}, got {self.metric!r}")
        if self.validation_requests < 0:
            raise InvalidArgument("validation_requests must be >= 0")
        if not 0.0 <= self.latency_margin < 1.0:
            raise InvalidArgument(f"latency_margin is a share of the baseline's latency in "
                                  f"[0, 1), got {self.latency_margin}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able, for the catalog."""
        values = asdict(self)
        values["stages"] = list(self.stages)
        values["candidate"] = {k: (f"<{len(v)} chars>" if k == "source" else v)
                               for k, v in self.candidate.items()}
        return values


def _new_test(metric: str, spec: ExperimentSpec) -> SequentialTest:
    kind = "bernoulli" if metric in ("errors", AGREEMENT) else "mean"
    higher = metric in ("feedback", AGREEMENT)
    return SequentialTest(metric, kind=kind, higher_is_better=higher,
                          min_samples=spec.min_samples, max_samples=spec.max_samples,
                          margin=spec.latency_margin if metric == "latency" else 0.0)


@dataclass
class Experiment:
    """The live state of one experiment (its run's, mirrored into the catalog)."""

    id: str
    spec: ExperimentSpec
    candidate_version: str
    baseline_version: str
    operator: str = "user"
    stage: Stage = Stage.VALIDATING
    #: the canary's share of real traffic (0 outside the canary stages)
    share: float = 0.0
    status: str = "running"
    decision: str | None = None
    reason: str = ""
    samples: dict[str, int] = field(default_factory=lambda: {BASELINE: 0, CANDIDATE: 0})
    stage_samples: dict[str, int] = field(default_factory=lambda: {BASELINE: 0, CANDIDATE: 0})
    timeline: list[dict[str, Any]] = field(default_factory=list)
    tests: dict[str, SequentialTest] = field(default_factory=dict)
    agreement: dict[str, int] = field(default_factory=lambda: {"same": 0, "different": 0})
    #: the timeline's wall clock (injected, so a test can fix it)
    clock: Callable[[], float] = field(default=time.time, repr=False, compare=False)

    def __post_init__(self) -> None:
        metrics = METRICS if self.spec.metric is None else (self.spec.metric,)
        self.tests = {m: _new_test(m, self.spec) for m in metrics}
        if self.spec.kind == "shadow" and self.spec.mode == "mirror":
            self.tests[AGREEMENT] = _new_test(AGREEMENT, self.spec)

    # -- samples ---------------------------------------------------------

    def record(self, arm: str, latency_ms: float, error: bool) -> None:
        """One request answered by ``arm`` (``error``: the handler raised)."""
        self.samples[arm] += 1
        self.stage_samples[arm] += 1
        if "latency" in self.tests and not error:
            self.tests["latency"].add(arm, latency_ms)
        if "errors" in self.tests:
            self.tests["errors"].add(arm, 1.0 if error else 0.0)

    def record_feedback(self, arm: str, score: float) -> None:
        """A user's score of an answer given by ``arm``."""
        if "feedback" in self.tests:
            self.tests["feedback"].add(arm, score)

    def record_agreement(self, same: bool) -> None:
        """Mirror mode: whether the shadow answered exactly like the main."""
        self.agreement["same" if same else "different"] += 1
        if AGREEMENT in self.tests:
            self.tests[AGREEMENT].add(BASELINE, 1.0)
            self.tests[AGREEMENT].add(CANDIDATE, 1.0 if same else 0.0)

    def enter(self, stage: Stage, detail: str, *, share: float = 0.0) -> None:
        """Move to ``stage`` (its sample counts start at zero)."""
        self.stage, self.share = stage, share
        self.stage_samples = {BASELINE: 0, CANDIDATE: 0}
        self.event("stage", detail)

    @property
    def stage_name(self) -> str:
        """The stage as the API and the catalog show it: ``shadow``, ``canary-50``..."""
        if self.stage is Stage.CANARY:
            return f"canary-{round(self.share * 100)}"
        return str(self.stage.value)

    @property
    def running(self) -> bool:
        """No verdict written yet (it may be winding down: stage done, status running)."""
        return self.status == "running"

    def conclude(self) -> None:
        """Decided: stage "done" at once (nothing is routed to the candidate any more);
        the status follows with :meth:`finish`, once the candidate is stopped."""
        self.stage, self.share = Stage.DONE, 0.0

    # -- what the tests say ---------------------------------------------

    def worse(self) -> str | None:
        """The first metric on which the candidate is significantly worse, if any."""
        # Wrong answers and errors first: they say more about a candidate than its speed.
        order = sorted(self.tests, key=lambda m: (m not in (AGREEMENT, "errors"), m))
        return next((m for m in order if self.tests[m].decision() == WORSE), None)

    def better(self) -> list[str]:
        """The metrics on which the candidate is significantly better."""
        return [m for m, t in self.tests.items() if t.decision() == BETTER and m != AGREEMENT]

    def no_improvement(self) -> bool:
        """Enough candidate samples and still no metric better (or the tests said equal)."""
        if self.better():
            return False
        settled = all(t.decision() == EQUAL for m, t in self.tests.items() if m != AGREEMENT)
        return settled or self.samples[CANDIDATE] >= self.spec.max_samples

    def describe_tests(self) -> str:
        """``metric: decision (candidate mean vs baseline mean)`` for each test."""
        parts = []
        for name, test in self.tests.items():
            summary = test.summary()
            mean = summary["mean"]
            parts.append(f"{name}: {test.decision()} ({mean[CANDIDATE]:.4g} vs "
                         f"{mean[BASELINE]:.4g})")
        return "; ".join(parts)

    # -- the record ------------------------------------------------------

    def event(self, event: str, detail: str) -> dict[str, Any]:
        """Append to the timeline and return the entry."""
        entry = {"ts": self.clock(), "stage": self.stage_name, "event": event, "detail": detail}
        self.timeline.append(entry)
        del self.timeline[:-MAX_TIMELINE]
        return entry

    def finish(self, verdict: Verdict) -> None:
        """The final word: status, decision and why."""
        self.status, self.decision, self.reason = verdict.status, verdict.decision, verdict.reason
        self.stage, self.share = Stage.DONE, 0.0
        self.event(verdict.decision, verdict.reason)

    def stats(self) -> dict[str, Any]:
        """The catalog's ``stats`` JSON: enough to show (and explain) the experiment later."""
        return {
            "spec": self.spec.to_dict(), "operator": self.operator,
            "samples": dict(self.samples),
            "statistics": {m: t.summary() for m, t in self.tests.items()},
            "agreement": dict(self.agreement), "timeline": list(self.timeline),
        }

    def to_dict(self) -> dict[str, Any]:
        """The reply of ``GET /v1/evolution/experiments/{id}``."""
        return {
            "id": self.id, "kind": self.spec.kind, "candidate_version": self.candidate_version,
            "baseline_version": self.baseline_version, "stage": self.stage_name,
            "status": self.status, "samples": dict(self.samples),
            "statistics": {m: t.summary() for m, t in self.tests.items()},
            "decision": self.decision, "reason": self.reason,
            "timeline": list(self.timeline), "hypothesis": self.spec.hypothesis,
            "operator": self.operator,
        }


def record_to_dict(record: Any) -> dict[str, Any]:
    """A catalog ExperimentRecord as the API shows it (experiments of earlier runs)."""
    stats = record.stats or {}
    return {
        "id": record.id, "kind": record.kind, "candidate_version": record.candidate_version,
        "baseline_version": record.baseline_version, "stage": record.stage,
        "status": record.status, "samples": stats.get("samples", {BASELINE: 0, CANDIDATE: 0}),
        "statistics": stats.get("statistics", {}), "decision": record.decision,
        "reason": record.reason, "timeline": stats.get("timeline", []),
        "hypothesis": stats.get("spec", {}).get("hypothesis", ""),
        "operator": stats.get("operator", ""),
    }
