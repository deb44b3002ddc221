"""Where a request goes: a routing policy, asked once per request.

::

    gateway ─► Router.submit(request) ─► router.policy.serve(request)
                 MainOnly     ─► host.submit ─► main instance          (no experiment)
                 Mirror       ─► host.submit, and a share of requests also to the
                                 shadow, concurrently; its answer is compared with
                                 the main's and never returned
                 Split        ─► a share of requests to the candidate instead of the
                                 main (the canary; the shadow in split mode)
                 Watch        ─► host.submit, each outcome a sample (after promotion)

The router holds :class:`MainOnly` unless an experiment installed another
policy (:meth:`Router.use`), so when no experiment runs a request goes
gateway → router → host → instance with no evolution work on the way.
The experiment policies report what they saw as
:data:`~project_o.supervisor.experiment.Sample` s through ``report`` (the
experiment's queue); a mirrored comparison runs as a task of the
experiment's own task group, so it ends with the experiment.

A candidate that dies or hangs on a request never costs the client its
answer: the request is served by the main instead (the guardrail fires
through the candidate's ``on_failure``).
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from project_o.errors import RequestFailed
from project_o.evolution.stats import BASELINE, CANDIDATE
from project_o.supervisor.answers import AnswerBook
from project_o.supervisor.api import EventSink, RequestResult
from project_o.supervisor.experiment import Answered, Compared, Sample, Watched
from project_o.supervisor.instance_handle import HandlerError, InstanceDied
from project_o.supervisor.metrics import SupervisorMetrics

__all__ = [
    "CandidateRoute",
    "MainOnly",
    "Mirror",
    "Policy",
    "Request",
    "Router",
    "ServingHost",
    "Split",
    "Watch",
]

#: the role candidate answers are counted under on project_o_requests_total
CANARY_ROLE = "canary"
#: the main gave no answer to compare the shadow's with
_NO_ANSWER = object()

Clock = Callable[[], float]
Report = Callable[[Sample], None]


@dataclass(frozen=True)
class Request:
    """One client request, as every policy sees it."""

    payload: Any
    deadline_s: float | None
    request_id: str
    on_event: EventSink | None = None


class ServingHost(Protocol):
    """The main's request path, as routing needs it (the host's :class:`~.dispatch.Dispatcher`)."""

    @property
    def version(self) -> str: ...

    @property
    def metrics(self) -> SupervisorMetrics: ...

    @property
    def answers(self) -> AnswerBook: ...

    async def submit(self, payload: Any, deadline_s: float | None = None, *,
                     request_id: str | None = None,
                     on_event: EventSink | None = None) -> RequestResult: ...


class CandidateRoute(Protocol):
    """What routing needs of the candidate (:class:`~.candidate.CandidateHost` is one)."""

    @property
    def version(self) -> str: ...

    async def request(self, request_id: str, payload: Any, deadline_s: float) -> Any: ...

    def kill(self, reason: str) -> None: ...


class Policy(Protocol):
    """Serves one request: by the main, the candidate, or both."""

    async def serve(self, request: Request) -> RequestResult: ...


class Router:
    """Asks the current policy where each request goes; :class:`MainOnly` by default."""

    def __init__(self, host: ServingHost) -> None:
        self.main_only = MainOnly(host)
        self.policy: Policy = self.main_only

    async def submit(self, payload: Any, deadline_s: float | None = None,
                     request_id: str | None = None,
                     on_event: EventSink | None = None) -> RequestResult:
        """Serve one request as the current policy says."""
        request = Request(payload, deadline_s, request_id or uuid.uuid4().hex, on_event)
        return await self.policy.serve(request)

    def use(self, policy: Policy) -> None:
        """Route every request from now on by ``policy``."""
        self.policy = policy

    def reset(self) -> None:
        """Back to the main alone."""
        self.policy = self.main_only


class MainOnly:
    """Every request to the main."""

    def __init__(self, host: ServingHost) -> None:
        self.host = host

    async def serve(self, request: Request) -> RequestResult:
        """The agent host answers."""
        return await self.host.submit(request.payload, request.deadline_s,
                                      request_id=request.request_id, on_event=request.on_event)


class Split:
    """A share of requests to the candidate *instead of* the main; both arms sampled."""

    def __init__(self, host: ServingHost, candidate: CandidateRoute, *, share: float,
                 deadline_s: float, rng: random.Random, report: Report,
                 clock: Clock = time.perf_counter) -> None:
        self.host, self.candidate, self.share = host, candidate, share
        self.deadline_s, self.rng, self.report, self.clock = deadline_s, rng, report, clock

    async def serve(self, request: Request) -> RequestResult:
        """By the candidate (its share of plain requests) or the main; each a sample."""
        # A streaming client gets the main: a candidate does not stream.
        if request.on_event is None and self.rng.random() < self.share:
            return await self._candidate(request)
        return await serve_baseline(self.host, request, self.report, self.clock)

    async def _candidate(self, request: Request) -> RequestResult:
        deadline = request.deadline_s or self.deadline_s
        started = self.clock()
        try:
            output = await self.candidate.request(request.request_id, request.payload, deadline)
        except HandlerError as exc:
            self.host.answers.remember(request.request_id, self.candidate.version)
            self.report(Answered(CANDIDATE, (self.clock() - started) * 1000, True))
            raise RequestFailed(exc.kind, exc.message, request_id=request.request_id,
                                traceback=exc.traceback) from exc
        except (InstanceDied, TimeoutError) as exc:
            if isinstance(exc, TimeoutError):
                self.candidate.kill(f"hang: request {request.request_id} got no answer in "
                                    f"{deadline:g} s")
            # The guardrail fires; the client's request is served by the main.
            return await self.host.submit(request.payload, request.deadline_s,
                                          request_id=request.request_id)
        seconds = self.clock() - started
        self.host.answers.remember(request.request_id, self.candidate.version)
        self.report(Answered(CANDIDATE, seconds * 1000, False))
        self.host.metrics.observe_request(self.candidate.version, CANARY_ROLE, "ok", seconds)
        return RequestResult(request.request_id, output, self.candidate.version, seconds * 1000)


class Mirror:
    """A share of requests *also* to the shadow; its answer compared, never returned."""

    def __init__(self, host: ServingHost, candidate: CandidateRoute, *, share: float,
                 deadline_s: float, rng: random.Random, report: Report,
                 tasks: asyncio.TaskGroup, clock: Clock = time.perf_counter) -> None:
        self.host, self.candidate, self.share = host, candidate, share
        self.deadline_s, self.rng, self.report, self.clock = deadline_s, rng, report, clock
        self.tasks = tasks

    async def serve(self, request: Request) -> RequestResult:
        """The main answers; a share of plain requests is mirrored to the shadow."""
        if request.on_event is not None or self.rng.random() >= self.share:
            return await self.host.submit(request.payload, request.deadline_s,
                                          request_id=request.request_id,
                                          on_event=request.on_event)
        # Sent at the same moment as the main's copy, so both arms see the same load.
        expected: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.tasks.create_task(self._compare(request.payload, expected))
        try:
            result = await serve_baseline(self.host, request, self.report, self.clock)
        except BaseException:
            expected.set_result(_NO_ANSWER)
            raise
        expected.set_result(result.output)
        return result

    async def _compare(self, payload: Any, expected: asyncio.Future[Any]) -> None:
        """The shadow's answer against the main's: an answered sample and an agreement."""
        started = self.clock()
        try:
            output = await self.candidate.request(f"shadow-{uuid.uuid4().hex}", payload,
                                                  self.deadline_s)
        except HandlerError:
            self.report(Answered(CANDIDATE, (self.clock() - started) * 1000, True))
            return
        except TimeoutError:
            self.candidate.kill("hang: no answer within the request deadline")
            return
        except InstanceDied:
            return  # the guardrail already fired (on_failure)
        latency_ms = (self.clock() - started) * 1000
        main_output = await expected
        if main_output is not _NO_ANSWER:
            self.report(Compared(output == main_output))
        self.report(Answered(CANDIDATE, latency_ms, False))


class Watch:
    """After promotion: the main (now the candidate's version) answers, under watch."""

    def __init__(self, host: ServingHost, version: str, report: Report) -> None:
        self.host, self.version, self.report = host, version, report

    async def serve(self, request: Request) -> RequestResult:
        """The host answers; each outcome of the watched version is a sample."""
        try:
            result = await self.host.submit(request.payload, request.deadline_s,
                                            request_id=request.request_id,
                                            on_event=request.on_event)
        except RequestFailed:
            self._seen(error=True)
            raise
        self._seen(error=False)
        return result

    def _seen(self, *, error: bool) -> None:
        if self.host.version == self.version:  # not the old version while the reload ran
            self.report(Watched(error))


async def serve_baseline(host: ServingHost, request: Request, report: Report,
                         clock: Clock) -> RequestResult:
    """The main answers; its latency and outcome are a baseline sample."""
    started = clock()
    try:
        result = await host.submit(request.payload, request.deadline_s,
                                   request_id=request.request_id, on_event=request.on_event)
    except RequestFailed:
        report(Answered(BASELINE, (clock() - started) * 1000, True))
        raise
    report(Answered(BASELINE, result.latency_ms, False))
    return result
