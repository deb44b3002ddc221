"""``POST /v1/requests`` answered without the framework's routing and dependency solving.

The hot route of the API. The profile of the supervisor under load put a
third of its CPU per request in FastAPI's routing, dependency solving and
middleware between the socket and the route; this ASGI middleware sits
inside the loopback and body-size checks and answers the one route
itself, with the same checks in the same order, the same models and the
same error bodies. The steps are the functions the route runs (one copy
each: :func:`~project_o.gateway.auth.bearer_token` reads the header as
HTTPBearer does, :func:`~project_o.gateway.bodies.parse_body` is what
``read_body`` runs, :func:`submit` is the route's body)::

    LoopbackOnlyMiddleware  403        (unchanged, outside)
    BodyLimitMiddleware     413        (unchanged, outside)
    FastRequests            POST /v1/requests:
                              BearerAuth.check          401
                              parse_body                415 / 400 / 422   (SubmitRequest)
                              service.submit            502 / 503 / 504
                              dump_json                 200 | 502 InvalidOutput
                            anything else: on to the FastAPI app (which still
                            declares the route, so /openapi.json describes it)
"""

from __future__ import annotations

import logging

from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from project_o.errors import ServiceError
from project_o.gateway.auth import BearerAuth, bearer_token
from project_o.gateway.bodies import dump_json, parse_body, result_payload
from project_o.gateway.models import SubmitRequest
from project_o.gateway.problems import (
    APIError,
    api_error_response,
    service_error_response,
    unexpected_error_response,
)
from project_o.supervisor.api import AgentService
from project_o.wire.packable import Packed

__all__ = ["REQUESTS_PATH", "FastRequests", "submit"]

REQUESTS_PATH = "/v1/requests"

logger = logging.getLogger(__name__)


class FastRequests:
    """ASGI middleware: serve ``POST /v1/requests`` directly; pass everything else on."""

    def __init__(self, app: ASGIApp, service: AgentService, auth: BearerAuth) -> None:
        self.app, self.service, self.auth = app, service, auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != REQUESTS_PATH \
                or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        try:
            response = await self._answer(Headers(scope=scope), receive)
        except APIError as exc:
            response = api_error_response(exc)
        except ServiceError as exc:
            response = service_error_response(exc)
        except Exception:  # what the framework's last-resort handler would answer
            logger.exception("POST %s failed unexpectedly", REQUESTS_PATH)
            response = unexpected_error_response()
        await response(scope, receive, send)

    async def _answer(self, headers: Headers, receive: Receive) -> Response:
        self.auth.check(bearer_token(headers.get("authorization")))
        body = await _body(receive)
        submission = parse_body(headers.get("content-type"), body, SubmitRequest)
        return await submit(self.service, submission)


async def _body(receive: Receive) -> bytes:
    # BodyLimitMiddleware (outside) hands the whole body on as one message
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def submit(service: AgentService, submission: SubmitRequest) -> Response:
    """Serve one validated submission: the 200 answer, or the service's error raised."""
    deadline_ms = submission.deadline_ms
    # validate() walked the input once; packed here, it is never walked again
    result = await service.submit(
        Packed.of(submission.input),
        deadline_s=None if deadline_ms is None else deadline_ms / 1000)
    body = dump_json(result_payload(result), request_id=result.request_id)
    return Response(body, media_type="application/json")
