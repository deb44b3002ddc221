"""The supervisor as its callers see it: the :class:`AgentService` protocol and its results.

The types live here, in the supervisor's layer, so the supervisor never
imports the gateway that serves them (see "Layers" in docs/design.md).
The gateway never talks to agent instances; it hands each call to a
service object living in the same asyncio loop and renders what comes
back: ``POST /v1/requests`` and the ``/v1/stream`` WebSocket call
:meth:`AgentService.submit` (the stream with ``on_event``),
``POST /v1/feedback`` :meth:`~AgentService.feedback`, ``GET /v1/versions``
:meth:`~AgentService.versions`, ``GET /v1/status``
:meth:`~AgentService.status` and ``GET /metrics``
:meth:`~AgentService.metrics` (every route: docs/design.md, "HTTP").

Calls either return or raise one of the
:class:`~project_o.errors.ServiceError` subclasses; each carries the HTTP
status the gateway answers with. Anything else they raise is a bug on the
service side and is answered with a bare 500.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

__all__ = ["AgentService", "EventSink", "FeedbackReceipt", "MetricsText", "RequestResult"]

#: receives each event the agent's handler emits (``ctx.emit``), in order;
#: called from the event loop and must not block
EventSink = Callable[[Any], None]


@dataclass(frozen=True)
class RequestResult:
    """The answer to one request.

    ``output`` is whatever the agent returned (JSON-able); ``version`` names
    the agent version that served it; ``latency_ms`` is measured by the
    service from acceptance to answer.
    """

    request_id: str
    output: Any
    version: str
    latency_ms: float


@dataclass(frozen=True)
class FeedbackReceipt:
    """What became of one piece of feedback.

    ``stored``: it is in the catalog, with ``version`` (the version that
    answered the request). ``delivered``: the agent's feedback hooks ran on
    it; when they did not, ``reason`` says why (no instance, a hook raised,
    no answer in time).
    """

    stored: bool
    delivered: bool
    version: str
    reason: str | None = None


@dataclass(frozen=True)
class MetricsText:
    """A Prometheus exposition: the body and its Content-Type."""

    body: bytes
    content_type: str


@runtime_checkable
class AgentService(Protocol):
    """The supervisor as the gateway sees it.

    Every method is called from the event loop the gateway runs in.
    """

    async def submit(
        self,
        input: Any,
        *,
        deadline_s: float | None = None,
        request_id: str | None = None,
        on_event: EventSink | None = None,
    ) -> RequestResult:
        """Serve one request; ``deadline_s`` (seconds) bounds the wait if given.

        ``input`` is any packable value, or a :class:`~project_o.wire.Packed`
        one (checked and packed by the gateway), which the service forwards
        to the instance as its bytes.

        ``request_id``: the id to use (unique; the service makes one if
        omitted). ``on_event``: stream what the handler emits to it.

        Raises :class:`~project_o.errors.PoisonRequest`,
        :class:`~project_o.errors.RequestFailed`,
        :class:`~project_o.errors.NoInstanceAvailable` or
        :class:`~project_o.errors.RequestTimeout`.
        """
        ...

    async def feedback(self, request_id: str, score: float, comment: str) -> FeedbackReceipt:
        """Store a user's score in -1..1 for a recent request and hand it to the agent.

        Raises :class:`~project_o.errors.UnknownRequest` for an id the
        service did not answer recently.
        """
        ...

    async def versions(self) -> dict[str, Any]:
        """``{"serving": id, "versions": [{"id", "status", "reason", "parents",
        "operator", "created_at"}, ...]}``, oldest version first."""
        ...

    def status(self) -> dict[str, Any]:
        """A JSON-able snapshot: ``supervisor_pid``, ``heart_pid``,
        ``instances`` (list), ``vault`` (dict), ``events`` (list), ..."""
        ...

    def metrics(self) -> MetricsText:
        """The service's metrics in the Prometheus text format."""
        ...
