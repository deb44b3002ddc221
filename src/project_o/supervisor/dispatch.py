"""The path of one request: host -> main -> back, surviving instance deaths on the way.

::

    submit(payload) ──► the live main with the least load (in flight + waiting at its
    │                   gate; ties in turn: instance_pool.py), then one of its slots (admission.py:
    │                   max_concurrency per instance; past max_queued waiting: Overloaded)
    │               ──► main.request(...) under the request's deadline
      ├─ answered ─────────────► RequestResult (the version is remembered, and proven once)
      ├─ the handler raised ───► RequestFailed (an answer too: feedback may rate it)
      ├─ the main died ────────► alone in flight on it: blamed (twice in a row: PoisonRequest);
      │                          one of several in flight: a suspect, re-run apart (the
      │                          instance runs nothing else meanwhile), so a poison is found
      │                          and the innocent are answered; then the next main
      └─ the deadline passed ──► RequestTimeout; a one-at-a-time main stuck on it is killed
"""

from __future__ import annotations

import asyncio
import time
import uuid
import weakref
from collections.abc import Callable
from typing import Any

from project_o.errors import (
    NoInstanceAvailable,
    Overloaded,
    PoisonRequest,
    RequestFailed,
    RequestTimeout,
    ServiceError,
)
from project_o.supervisor.admission import DEFAULT_MAX_QUEUED, Admission, InstanceGate
from project_o.supervisor.answers import AnswerBook
from project_o.supervisor.api import EventSink, RequestResult
from project_o.supervisor.events import EventLog
from project_o.supervisor.instance_factory import InstanceFactory
from project_o.supervisor.instance_handle import (
    HandlerError,
    InstanceDied,
    InstanceHandle,
)
from project_o.supervisor.instance_pool import InstancePool
from project_o.supervisor.metrics import SupervisorMetrics
from project_o.supervisor.poison import PoisonTracker

__all__ = ["Dispatcher"]

#: how each failure shows on project_o_requests_total{outcome}
_OUTCOMES: dict[type[BaseException], str] = {
    RequestFailed: "failed", RequestTimeout: "timeout", PoisonRequest: "poison",
    Overloaded: "overloaded", NoInstanceAvailable: "unavailable",
    asyncio.CancelledError: "cancelled",
}


class Dispatcher:
    """Sends each request to the least busy main, re-dispatching it when that main dies."""

    def __init__(
        self, pool: InstancePool, factory: InstanceFactory, events: EventLog,
        metrics: SupervisorMetrics, answers: AnswerBook, poison: PoisonTracker, *,
        default_deadline: float, on_answer: Callable[[str], None],
        max_queued: int = DEFAULT_MAX_QUEUED,
    ) -> None:
        self._pool = pool
        self._factory = factory
        self._events = events
        self._metrics = metrics
        self._answers = answers
        self._poison = poison
        self._default_deadline = default_deadline
        self._on_answer = on_answer
        self.admission = Admission(max_queued)
        self._gates: weakref.WeakKeyDictionary[InstanceHandle, InstanceGate] = (
            weakref.WeakKeyDictionary())

    async def submit(
        self, payload: Any, deadline_s: float | None = None, *,
        request_id: str | None = None, on_event: EventSink | None = None,
    ) -> RequestResult:
        """Answer one request (see the module docstring for what can happen)."""
        request_id = request_id or uuid.uuid4().hex
        started = time.perf_counter()
        try:
            output, served_by = await self._serve(request_id, payload, deadline_s, on_event)
        except (ServiceError, asyncio.CancelledError) as exc:
            error = type(exc).__name__ if isinstance(exc, ServiceError) else None
            self._metrics.observe_request(self._factory.version, "main", _outcome(exc),
                                          time.perf_counter() - started, error)
            raise
        finally:
            self._poison.settle(request_id)
        seconds = time.perf_counter() - started
        self._metrics.observe_request(served_by.version, served_by.role, "ok", seconds)
        return RequestResult(request_id, output, served_by.version, seconds * 1000)

    async def _serve(
        self, request_id: str, payload: Any, deadline_s: float | None,
        on_event: EventSink | None,
    ) -> tuple[Any, InstanceHandle]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (deadline_s or self._default_deadline)
        while True:
            apart = self._poison.is_suspect(request_id)
            main, gate = await self._admit(request_id, deadline, apart)
            try:
                async with asyncio.timeout_at(deadline):
                    output = await main.request(request_id, payload, deadline - loop.time(),
                                                on_event)
            except InstanceDied as died:
                self._blame(request_id, main, died.reason)
                continue
            except TimeoutError:
                _free_if_stuck(main)
                raise RequestTimeout(
                    f"request {request_id} got no answer within its deadline",
                    request_id=request_id,
                ) from None
            except HandlerError as exc:
                self._answers.remember(request_id, main.version)  # an answer too: it may be rated
                raise RequestFailed(exc.kind, exc.message, request_id=request_id,
                                    traceback=exc.traceback) from exc
            finally:
                gate.release(apart)
            self._poison.forgive(request_id)
            self._on_answer(main.version)
            self._answers.remember(request_id, main.version)
            return output, main

    @property
    def version(self) -> str:
        """The version the main serves (routing compares a candidate's with it)."""
        return self._factory.version

    @property
    def metrics(self) -> SupervisorMetrics:
        """Where request outcomes are counted (the split policy counts the candidate's)."""
        return self._metrics

    @property
    def answers(self) -> AnswerBook:
        """Which version answered each recent request (feedback finds it there)."""
        return self._answers

    async def _admit(self, request_id: str, deadline: float,
                     apart: bool) -> tuple[InstanceHandle, InstanceGate]:
        """A live main and a slot on it (all of its slots, ``apart``), within the deadline."""
        loop = asyncio.get_running_loop()
        with self.admission.waiting():
            while True:
                main = await self._pool.choose_main(deadline - loop.time(), self._load)
                gate = self._gate(main)
                try:
                    if not gate.try_acquire(apart):  # no timer for a slot free at once
                        async with asyncio.timeout_at(deadline):
                            await gate.acquire(apart)
                except TimeoutError:
                    raise RequestTimeout(
                        f"request {request_id} waited its whole deadline for a free instance",
                        request_id=request_id) from None
                if main.alive:
                    return main, gate
                gate.release(apart)  # it died while we waited: the next main

    def _load(self, instance: InstanceHandle) -> int:
        """How busy ``instance`` is: its requests in flight and those waiting for it."""
        gate = self._gates.get(instance)
        return 0 if gate is None else gate.used + gate.waiting

    def _gate(self, instance: InstanceHandle) -> InstanceGate:
        gate = self._gates.get(instance)
        if gate is None:
            gate = self._gates[instance] = InstanceGate(instance.max_concurrency)
        return gate

    def _blame(self, request_id: str, instance: InstanceHandle, reason: str) -> None:
        """Count a death against the request, if it alone can have caused it."""
        if request_id not in instance.suspects:
            return  # never reached the instance
        if not self._factory.zygote_running():
            return  # its zygote died and took it along (PR_SET_PDEATHSIG): not the request
        if len(instance.suspects) > 1:
            # Several were in flight: any of them may have done it. Each is run
            # again apart, where a death can only be its own.
            self._poison.suspect(request_id)
            return
        kills = self._poison.blame(request_id)
        if kills is None:
            return
        self._events.record("quarantine", request_id, f"killed {kills} instances in a row: "
                            f"{reason}", version=self._factory.version)
        raise PoisonRequest(
            f"request {request_id} was quarantined: it killed {kills} instances in a "
            f"row (last: {reason}); the agent keeps serving other requests"
        )


def _free_if_stuck(instance: InstanceHandle) -> None:
    """Kill ``instance`` once requests past their deadline hold every one of its slots.

    A one-at-a-time instance is stuck as soon as one is. A concurrent one
    cancels an async handler at the deadline itself and goes on serving
    beside a slow plain handler, until slow ones fill it. Judged by what the
    instance has not answered, never by its heartbeats (agent code can forge
    those).
    """
    expired = instance.expired
    if instance.alive and len(expired) >= instance.max_concurrency:
        instance.kill(f"{len(expired)} requests past their deadlines (the oldest: "
                      f"{expired[0]}) still hold all {instance.max_concurrency} of its slots")


def _outcome(exc: BaseException) -> str:
    """The ``outcome`` label for a request that ended with ``exc``."""
    return next((name for kind, name in _OUTCOMES.items() if isinstance(exc, kind)), "failed")
