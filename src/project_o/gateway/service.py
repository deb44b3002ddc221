"""What the gateway needs from the supervisor: the :class:`AgentService` protocol.

The gateway never talks to agent instances; it hands each request to a
service object living in the same asyncio loop and renders what comes back::

    HTTP client ──POST /v1/requests──▶ gateway ──await submit(input)──▶ AgentService
                                                                          (the supervisor)
                ◀── 200 RequestResult ─┘  ◀── RequestResult ──────────────┘
                ◀── 5xx error body ────┘  ◀── raises ServiceError ────────┘

``submit`` either returns a :class:`RequestResult` or raises one of the
:class:`~project_o.errors.ServiceError` subclasses; each carries the HTTP
status the gateway answers with. Anything else it raises is a bug on the
service side and is answered with a bare 500.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

__all__ = ["AgentService", "RequestResult"]


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


@runtime_checkable
class AgentService(Protocol):
    """The supervisor as the gateway sees it.

    Both methods are called from the event loop the gateway runs in.
    """

    async def submit(self, input: Any, *, deadline_s: float | None = None) -> RequestResult:
        """Serve one request; ``deadline_s`` (seconds) bounds the wait if given.

        Raises :class:`~project_o.errors.PoisonRequest`,
        :class:`~project_o.errors.RequestFailed`,
        :class:`~project_o.errors.NoInstanceAvailable` or
        :class:`~project_o.errors.RequestTimeout`.
        """
        ...

    def status(self) -> dict[str, Any]:
        """A JSON-able snapshot: ``supervisor_pid``, ``heart_pid``,
        ``instances`` (list), ``vault`` (dict), ``events`` (list), ..."""
        ...
