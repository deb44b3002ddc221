"""Fakes for driving an experiment and the router without processes, sockets or sleeps.

Time is a :class:`FakeClock` that only moves when a fake "serves" a request,
by the latency that request is given, and moves per task: a mirrored
request's shadow copy runs in a task of its own, concurrently with the
main's copy, so each copy's latency is its own. Each fake awaits one turn
of the event loop (``asyncio.sleep(0)``: no time passes), as real I/O
would, so the experiment's coroutine takes its samples while requests are
driven.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import random
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from project_o.errors import AgentLoadError, RequestFailed
from project_o.supervisor.answers import AnswerBook
from project_o.supervisor.api import EventSink, RequestResult
from project_o.supervisor.config import SupervisorConfig
from project_o.supervisor.experiment import Experiment, Verdict
from project_o.supervisor.instance_handle import HandlerError, InstanceDied
from project_o.supervisor.metrics import SupervisorMetrics
from project_o.vault.quarantine import OverlayInfo, OverlayStatus
from project_o.wire import Message

BASE_VERSION = "base"
#: a deadlock guard, not a speed check: these tests take milliseconds when they work
GUARD_S = 60.0


def async_test(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test body in a fresh event loop, under a deadlock guard."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(asyncio.wait_for(fn(*args, **kwargs), GUARD_S))

    return wrapper


async def turn() -> None:
    """One turn of the event loop: what an await on real I/O gives the other tasks."""
    await asyncio.sleep(0)


class FakeClock:
    """Seconds that pass only when a fake serves a request, on the current task's time line.

    A task starts at its creator's time (asyncio copies the context), so
    concurrent requests overlap as they would on a real clock.
    """

    def __init__(self) -> None:
        self._now: contextvars.ContextVar[float] = contextvars.ContextVar("now", default=0.0)

    def __call__(self) -> float:
        return self._now.get()

    def advance(self, ms: float) -> None:
        """``ms`` milliseconds pass for the current task."""
        self._now.set(self._now.get() + ms / 1000)


@dataclass
class FakeInstance:
    alive: bool = True


class RecordingAnswers(AnswerBook):
    """The real answer book, remembering which versions it was told to trust."""

    def __init__(self) -> None:
        super().__init__()
        self.trusted: list[str] = []

    def trust(self, version: str) -> None:
        self.trusted.append(version)
        super().trust(version)


@dataclass
class FakeHost:
    """The agent host's parts, played by one fake: answers by ``answer``, with latencies
    drawn around ``latency_ms``.

    It is the request path (``submit``, ``version``, ``metrics``, ``answers``),
    the pool (``main``, ``tell_main``), the journal (checkpoints) and the
    reloads; ``dispatcher``, ``pool``, ``journal`` and
    ``reloads`` are itself, so code handed the real host's parts finds them.
    """

    config: SupervisorConfig
    clock: FakeClock
    rng: random.Random = field(default_factory=lambda: random.Random(1))
    version: str = BASE_VERSION
    latency_ms: float = 10.0
    #: versions whose requests fail (RequestFailed) once they serve
    failing: set[str] = field(default_factory=set)
    metrics: SupervisorMetrics = field(default_factory=SupervisorMetrics)
    answers: RecordingAnswers = field(default_factory=RecordingAnswers)
    main: FakeInstance | None = field(default_factory=FakeInstance)
    last_checkpoint: dict[str, Any] | None = None
    served: list[str] = field(default_factory=list)
    reloads_done: list[tuple[str, str]] = field(default_factory=list)
    told: list[Message] = field(default_factory=list)

    dispatcher = pool = journal = reloads = property(lambda self: self)

    async def submit(self, payload: Any, deadline_s: float | None = None, *,
                     request_id: str | None = None,
                     on_event: EventSink | None = None) -> RequestResult:
        await turn()
        latency = max(0.1, self.rng.gauss(self.latency_ms, 1.0))
        self.clock.advance(latency)
        self.served.append(str(request_id))
        if self.version in self.failing:
            raise RequestFailed("RuntimeError", "regressed", request_id=request_id)
        return RequestResult(str(request_id), answer(payload), self.version, latency)

    async def request_checkpoint(self, instance: Any, timeout: float) -> None:
        await turn()
        self.last_checkpoint = {"id": "1", "last_sequence": 0}

    async def reload(self, agent: Path, version: str, reason: str) -> None:
        await turn()
        self.reloads_done.append((version, reason))
        self.version = version

    async def tell_main(self, message: Message) -> bool:
        self.told.append(message)
        return True


def answer(payload: Any) -> Any:
    """What the baseline answers: the request's n back."""
    return {"n": payload.get("n")} if isinstance(payload, dict) else payload


@dataclass
class FakeCandidate:
    """The candidate's processes: answers like ``answer`` unless told to crash or differ."""

    clock: FakeClock
    on_failure: Callable[[str], None]
    rng: random.Random = field(default_factory=lambda: random.Random(2))
    version: str = ""
    latency_ms: float = 10.0
    #: "ok", "crash" (dies on its first request), "wrong" (answers differently), "error"
    #: (its handler raises), "bug" (the request raises what no layer expects)
    behaviour: str = "ok"
    import_error: str | None = None
    roles: list[str] = field(default_factory=list)
    requests: int = 0
    killed: list[str] = field(default_factory=list)
    closed: bool = False
    entered: bool = False
    #: called at each close, its results kept (what the experiment showed meanwhile)
    watch: Callable[[], Any] | None = None
    seen_at_close: list[Any] = field(default_factory=list)
    experiment_id: str = ""
    #: writes the canary made (one per canary request), and how they ended
    canary_writes: int = 0
    writes_settled: list[tuple[str, str]] = field(default_factory=list)

    async def __aenter__(self) -> Self:
        self.entered = True
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        traceback: TracebackType | None) -> None:
        await self.close()

    async def start(self, agent: Path, version: str, experiment_id: str) -> None:
        await turn()
        if self.import_error is not None:
            raise AgentLoadError(self.import_error)
        self.version, self.experiment_id = version, experiment_id

    async def spawn(self, role: str) -> object:
        await turn()
        self.roles.append(role)
        return role

    async def request(self, request_id: str, payload: Any, deadline_s: float) -> Any:
        await turn()
        if self.closed or self.behaviour == "dead":
            raise InstanceDied("the candidate has no live instance")
        self.requests += 1
        if self.roles[-1:] == ["canary"]:
            self.canary_writes += 1
        if self.behaviour == "crash":
            self.behaviour = "dead"
            self.on_failure("EOF on the socket; exit code 3")
            raise InstanceDied("EOF on the socket")
        self.clock.advance(max(0.1, self.rng.gauss(self.latency_ms, 1.0)))
        if self.behaviour == "error":
            raise HandlerError("RuntimeError", "candidate failed", "")
        if self.behaviour == "bug":
            raise ValueError("a bug on the way to the candidate")
        if self.behaviour == "wrong":
            return {"n": -1}
        return answer(payload)

    def kill(self, reason: str) -> None:
        self.killed.append(reason)

    async def promote_writes(self, reason: str) -> OverlayInfo | None:
        await turn()
        return self._settle("promoted", reason)

    def quarantine_writes(self, reason: str) -> OverlayInfo | None:
        return self._settle("quarantined", reason)

    def _settle(self, status: OverlayStatus, reason: str) -> OverlayInfo | None:
        if "canary" not in self.roles or self.writes_settled:
            return None
        self.writes_settled.append((status, reason))
        return OverlayInfo(id="o1", version=self.version, experiment_id=self.experiment_id,
                           base_sequence=0, created_ns=0, status=status, reason=reason,
                           writes=self.canary_writes)

    async def drain(self, timeout: float) -> None:
        await turn()

    async def close(self) -> None:
        if self.watch is not None:
            self.seen_at_close.append(self.watch())
        self.closed = True


@dataclass
class FakeLedger:
    promotions: list[str] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)

    async def promoted(self, experiment: Experiment) -> None:
        self.promotions.append(experiment.candidate_version)

    async def learn(self, experiment: Experiment, verdict: Verdict) -> None:
        self.verdicts.append(verdict)
