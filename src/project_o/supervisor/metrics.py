"""The supervisor's Prometheus metrics, in a registry of its own.

::

    Dispatcher, Split ──── observe_request ──▶ project_o_requests_total{version,role,outcome}
                                               project_o_request_latency_seconds{version,role}
                                               project_o_errors_total{version,type}
    Journal.write ──────── observe_wal_append ▶ project_o_wal_append_seconds
    Journal.checkpoint ─── checkpoint_written ▶ project_o_checkpoints_total
    LLMProxy ───────────── observe_llm_call ──▶ project_o_llm_calls_total{version,role,outcome}
                                               project_o_llm_tokens_total{version,role,kind}
    Supervisor.feedback ─── observe_feedback ─▶ project_o_feedback_score{version}
    EventLog ─ each event ─ on_event ─────────▶ project_o_instance_deaths_total{kind,role}
                                               project_o_events_total{kind}
    scrape ─▶ probe() ─▶ LiveState, read now ─▶ project_o_instance_restarts_total
                                               project_o_wal_last_sequence
                                               project_o_wal_durable_sequence
                                               project_o_instance_rss_bytes{role,version}
                                               project_o_serving_version{version} = 1

    GET /metrics ──▶ render() ──▶ Prometheus text (MetricsText)

    observe_request / observe_feedback ──▶ each subscriber(RequestSeen | FeedbackSeen)
                                           (perception watches health this way)

Counters and histograms change as things happen; figures that are a
state rather than a stream of events (sequences, RSS, the restart count)
are read from the live objects at scrape time, so they are never stale.

The WAL does not time its fsyncs, so ``project_o_wal_append_seconds`` is
the time the supervisor waits on ``vault.append_async``: the write and
the group-commit fsync together, which is what a memory write costs the
agent. A registry per supervisor (not the process-global one) keeps
tests and in-process benchmarks from adding to each other's figures.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from project_o.supervisor.api import MetricsText

__all__ = [
    "OUTCOMES",
    "FeedbackSeen",
    "LiveInstance",
    "LiveState",
    "Observation",
    "RequestSeen",
    "SupervisorMetrics",
]

logger = logging.getLogger(__name__)

PREFIX: Final = "project_o"
#: what ``outcome`` may say on project_o_requests_total
OUTCOMES: Final = ("ok", "failed", "timeout", "poison", "unavailable", "cancelled")
#: request latency: 1 ms (a memory read) to 60 s (a long LLM call), the
#: deadlines' range; the default deadline is 30 s
LATENCY_BUCKETS: Final = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)
#: a WAL append: 100 µs (batch mode, page cache) to 1 s (a struggling disk);
#: an fsync on an SSD takes 0.1-2 ms, on a spinning disk 5-20 ms
WAL_BUCKETS: Final = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    1.0,
)
#: feedback scores are in -1..1: five bands, from "bad" to "good"
SCORE_BUCKETS: Final = (-1.0, -0.5, 0.0, 0.5, 1.0)
#: events that are an instance dying, and so count as deaths
DEATH_KINDS: Final = frozenset({"crash", "hang"})


@dataclass(frozen=True)
class LiveInstance:
    """One live instance, as its last heartbeat described it."""

    role: str
    version: str
    rss_bytes: int


@dataclass(frozen=True)
class LiveState:
    """What a scrape reads from the supervisor at that moment."""

    serving_version: str
    restarts: int
    wal_last_sequence: int
    wal_durable_sequence: int
    instances: list[LiveInstance] = field(default_factory=list)


Probe = Callable[[], LiveState | None]


@dataclass(frozen=True)
class RequestSeen:
    """One request ended, as :meth:`SupervisorMetrics.observe_request` counted it."""

    version: str
    role: str
    outcome: str
    seconds: float
    error: str | None = None


@dataclass(frozen=True)
class FeedbackSeen:
    """A user scored an answer ``version`` gave."""

    version: str
    score: float


#: what subscribers of the metrics are shown
Observation = RequestSeen | FeedbackSeen


class SupervisorMetrics:
    """Every metric of one supervisor; :meth:`render` for ``GET /metrics``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._probe: Probe = lambda: None
        self._subscribers: list[Callable[[Observation], None]] = []
        #: (version, role, outcome) -> its requests counter and latency histogram
        self._children: dict[tuple[str, str, str], tuple[Any, Any]] = {}
        self.requests = Counter(
            f"{PREFIX}_requests",
            "Requests answered, by the version and role that answered and how it ended.",
            ["version", "role", "outcome"],
            registry=self.registry,
        )
        self.latency = Histogram(
            f"{PREFIX}_request_latency_seconds",
            "Time from acceptance to answer.",
            ["version", "role"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.errors = Counter(
            f"{PREFIX}_errors",
            "Requests that failed, by error type (RequestFailed, "
            "RequestTimeout, PoisonRequest, NoInstanceAvailable).",
            ["version", "type"],
            registry=self.registry,
        )
        self.deaths = Counter(
            f"{PREFIX}_instance_deaths",
            "Instances that died, by kind (crash, hang) and role.",
            ["kind", "role"],
            registry=self.registry,
        )
        self.events = Counter(
            f"{PREFIX}_events",
            "Supervisor events (start, crash, hang, takeover, quarantine, fallback...), by kind.",
            ["kind"],
            registry=self.registry,
        )
        self.wal_append = Histogram(
            f"{PREFIX}_wal_append_seconds",
            "Time to make one memory write durable: the WAL "
            "write and its fsync, as the supervisor waits for them.",
            buckets=WAL_BUCKETS,
            registry=self.registry,
        )
        self.checkpoints = Counter(
            f"{PREFIX}_checkpoints", "Checkpoints written.", registry=self.registry
        )
        self.feedback = Histogram(
            f"{PREFIX}_feedback_score",
            "Feedback scores (-1 bad .. 1 good), by the version that answered.",
            ["version"],
            buckets=SCORE_BUCKETS,
            registry=self.registry,
        )
        self.llm_calls = Counter(
            f"{PREFIX}_llm_calls",
            "Model calls the supervisor made for instances, by version, role and outcome "
            "(ok, failed).",
            ["version", "role", "outcome"],
            registry=self.registry,
        )
        self.llm_tokens = Counter(
            f"{PREFIX}_llm_tokens",
            "Tokens of those calls, by version, role and kind (prompt, completion).",
            ["version", "role", "kind"],
            registry=self.registry,
        )
        self.registry.register(_LiveCollector(lambda: self._probe()))

    def set_probe(self, probe: Probe) -> None:
        """Where scrapes read the live figures (the supervisor, once started)."""
        self._probe = probe

    def subscribe(self, listener: Callable[[Observation], None]) -> None:
        """Show ``listener`` every request and feedback observed from now on."""
        self._subscribers.append(listener)

    def _tell(self, observation: Observation) -> None:
        for listener in self._subscribers:
            try:
                listener(observation)
            except Exception:  # an observer must not break the request it observes
                logger.exception("metrics subscriber %r failed", listener)

    # -- as things happen -------------------------------------------------

    def observe_request(
        self, version: str, role: str, outcome: str, seconds: float, error: str | None = None
    ) -> None:
        """One request ended with ``outcome`` (one of :data:`OUTCOMES`)."""
        key = (version, role, outcome)
        children = self._children.get(key)
        if children is None:  # label lookups cost more than the counting: once per key
            children = self._children[key] = (self.requests.labels(version, role, outcome),
                                              self.latency.labels(version, role))
        children[0].inc()
        children[1].observe(seconds)
        if error is not None:
            self.errors.labels(version, error).inc()
        if self._subscribers:
            self._tell(RequestSeen(version, role, outcome, seconds, error))

    def observe_wal_append(self, seconds: float) -> None:
        """One memory write became durable after ``seconds``."""
        self.wal_append.observe(seconds)

    def checkpoint_written(self) -> None:
        """One checkpoint is on disk."""
        self.checkpoints.inc()

    def observe_feedback(self, version: str, score: float) -> None:
        """A user scored an answer ``version`` gave."""
        self.feedback.labels(version).observe(score)
        if self._subscribers:
            self._tell(FeedbackSeen(version, score))

    def observe_llm_call(self, version: str, role: str, outcome: str, seconds: float,
                         prompt_tokens: int, completion_tokens: int) -> None:
        """One model call made for an instance of ``version`` ended with ``outcome``."""
        self.llm_calls.labels(version, role, outcome).inc()
        self.llm_tokens.labels(version, role, "prompt").inc(prompt_tokens)
        self.llm_tokens.labels(version, role, "completion").inc(completion_tokens)

    def on_event(self, event: dict[str, Any]) -> None:
        """Count one supervisor event (an :class:`EventLog` subscriber)."""
        kind = str(event.get("kind", "unknown"))
        self.events.labels(kind).inc()
        if kind in DEATH_KINDS:
            self.deaths.labels(kind, str(event.get("role", "unknown"))).inc()

    # -- scraping ---------------------------------------------------------

    def render(self) -> MetricsText:
        """Every metric, in the Prometheus text format."""
        return MetricsText(generate_latest(self.registry), CONTENT_TYPE_PLAIN_0_0_4)


class _LiveCollector:
    """Reads the live figures at scrape time (a custom collector)."""

    def __init__(self, probe: Probe) -> None:
        self._probe = probe

    def describe(self) -> list[Metric]:
        return []  # the families depend on the live state; nothing to check ahead

    def collect(self) -> Iterator[Metric]:
        state = self._probe()
        if state is None:
            return  # not started yet
        restarts = CounterMetricFamily(
            f"{PREFIX}_instance_restarts", "Instances replaced since the supervisor started."
        )
        restarts.add_metric([], state.restarts)
        yield restarts
        yield _gauge(
            "wal_last_sequence", "Sequence of the last entry in the WAL.", state.wal_last_sequence
        )
        yield _gauge(
            "wal_durable_sequence",
            "Sequence of the last entry known fsynced.",
            state.wal_durable_sequence,
        )
        rss = GaugeMetricFamily(
            f"{PREFIX}_instance_rss_bytes",
            "Resident memory of each live instance, from its last heartbeat.",
            labels=["role", "version"],
        )
        for instance in state.instances:
            rss.add_metric([instance.role, instance.version], instance.rss_bytes)
        yield rss
        serving = GaugeMetricFamily(
            f"{PREFIX}_serving_version",
            "1 for the agent version answering requests.",
            labels=["version"],
        )
        serving.add_metric([state.serving_version], 1)
        yield serving


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{PREFIX}_{name}", documentation, value=value)
