"""The FastAPI application: the routes and what each one answers.

The routes, their bodies and answers are tabled in docs/design.md
("HTTP"); here each is declared with its pydantic models
(:mod:`project_o.gateway.models`), which ``/openapi.json`` is built from.

What a ``POST /v1/requests`` (or ``/v1/feedback``) passes through, and who may refuse it::

    LoopbackOnlyMiddleware 403 Host or Origin not a loopback name (DNS rebinding)
    BodyLimitMiddleware   413  body over max_body_bytes (counted as it arrives)
    FastRequests               POST /v1/requests itself, the same steps below without
                               the framework's routing (see gateway/fast_path.py)
    routing               404 / 405
    BearerAuth            401  missing or wrong token (before the body is parsed)
    read_body             415 not JSON, 400 invalid JSON, 422 fields wrong or unknown
    service.submit        502 PoisonRequest / RequestFailed, 503 NoInstanceAvailable,
                          504 RequestTimeout
    service.feedback      404 UnknownRequest (no recent request has that id)
    dump_json             502 the agent's output is not JSON
                          200 SubmitReply / 202 FeedbackReply

Every refusal has the body ``{"error": {"type", "message", ...}}``
(:mod:`project_o.gateway.problems`). ``/metrics`` is open because scrapers
rarely carry tokens and it changes nothing; it reveals counts and versions,
so bind the gateway to a public address only behind a proxy that guards it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request, Response, WebSocket
from pydantic import BaseModel
from starlette.types import ASGIApp

from project_o import __version__
from project_o.errors import InvalidArgument
from project_o.gateway.auth import BearerAuth
from project_o.gateway.bodies import read_body
from project_o.gateway.chat import chat_router, chat_schemas
from project_o.gateway.fast_path import FastRequests, submit
from project_o.gateway.limits import DEFAULT_MAX_BODY_BYTES, BodyLimitMiddleware
from project_o.gateway.loopback import LoopbackOnlyMiddleware
from project_o.gateway.models import (
    JSON_VALUE_SCHEMA,
    ErrorReply,
    ExperimentRequest,
    ExperimentSummary,
    FeedbackReply,
    FeedbackRequest,
    HealthReply,
    SubmitReply,
    SubmitRequest,
    TicketReply,
    VersionsReply,
)
from project_o.gateway.problems import install_error_handlers, service_method
from project_o.gateway.quarantine_routes import quarantine_routes
from project_o.gateway.stream import STREAM_PATH, STREAM_TICKET_TTL_S, StreamSession
from project_o.gateway.tickets import TICKET_PARAMETER, TicketBook
from project_o.supervisor.api import AgentService

__all__ = ["create_app", "read_body", "read_feedback", "read_submission"]

#: adds routes to the app: ``mount(app, service, token)``
Mount = Callable[[FastAPI, AgentService, str], object]


def _error(description: str, **extra: Any) -> dict[str, Any]:
    return {"model": ErrorReply, "description": description, **extra}


_V1_ERRORS: dict[int | str, dict[str, Any]] = {
    401: _error("Missing or wrong `Authorization: Bearer <token>`."),
    413: _error("The body is over the gateway's size limit."),
    500: _error("InternalError: a bug in the gateway or the service; the server log has it."),
}
_QUARANTINE_ERRORS: dict[int | str, dict[str, Any]] = {
    **_V1_ERRORS,
    404: _error("UnknownOverlay: no overlay of canary writes has this id."),
    409: _error("OverlayNotApplicable: the overlay is open, promoted or applied already."),
}
_COMPONENT_REF = "#/components/schemas/{model}"
_BODY_ERRORS: dict[int | str, dict[str, Any]] = {
    400: _error("InvalidJSON: the body is empty or not valid JSON."),
    415: _error("UnsupportedMediaType: the body is not sent as application/json."),
    422: _error(
        "InvalidRequest: the JSON does not match the request schema; "
        "`fields` names each unknown or invalid field."
    ),
}
_SUBMIT_ERRORS: dict[int | str, dict[str, Any]] = {
    **_BODY_ERRORS,
    502: _error(
        "PoisonRequest: the request killed two agent instances in a row and was "
        "quarantined. RequestFailed: the agent's handler raised (`kind` names the "
        "exception). InvalidOutput: the agent's output is not JSON."
    ),
    503: _error(
        "NoInstanceAvailable: no agent instance can take the request yet. Overloaded: "
        "every instance serves its max_concurrency and the queue is full.",
        headers={
            "Retry-After": {
                "description": "Seconds to wait before retrying.",
                "schema": {"type": "integer"},
            }
        },
    ),
    504: _error("RequestTimeout: the deadline passed before the agent answered."),
}
_FEEDBACK_ERRORS: dict[int | str, dict[str, Any]] = {
    **_BODY_ERRORS,
    404: _error(
        "UnknownRequest: no recent request has this `request_id` (never issued, too old, "
        "or answered before the supervisor restarted). Nothing was stored."
    ),
}


#: the schemas the request bodies refer to, added to the document's components
_BODY_DEFS: dict[str, Any] = {"JSONValue": JSON_VALUE_SCHEMA}


def _body_schema(model: type[BaseModel], json_values: tuple[str, ...] = ()) -> dict[str, Any]:
    # Bodies are parsed by read_body (so auth comes first and the errors are
    # ours), which hides them from FastAPI; describe them here instead. The
    # models they refer to go to components/schemas, where OpenAPI looks;
    # the fields in `json_values` are any JSON the wire carries (JSONValue).
    schema = model.model_json_schema(ref_template=_COMPONENT_REF)
    _BODY_DEFS.update(schema.pop("$defs", {}))
    for name in json_values:
        schema["properties"][name]["$ref"] = _COMPONENT_REF.format(model="JSONValue")
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": schema}},
        }
    }


def _with_body_defs(app: FastAPI) -> None:
    """Make ``app.openapi()`` list the schemas the request bodies refer to."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        document = generate()
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        for name, schema in {**_BODY_DEFS, **chat_schemas()}.items():
            schemas.setdefault(name, schema)
        return document

    app.openapi = openapi  # type: ignore[method-assign]


_DESCRIPTION = f"""
The HTTP API of a Project O supervisor. Every `/v1/` call needs the API token
as `Authorization: Bearer <token>`; `/healthz`, `/openapi.json` and `/metrics`
are open (they change nothing).

## Streaming: WebSocket `{STREAM_PATH}`

WebSocket routes are not part of OpenAPI, so here is this one.

* **Auth**: the `Authorization: Bearer <token>` header, or — for browsers,
  which cannot set headers on a WebSocket — a ticket: `POST /v1/tickets`
  (with the header) returns one, good once, for `{STREAM_PATH}` only, for
  {STREAM_TICKET_TTL_S:g} s; connect to `{STREAM_PATH}?{TICKET_PARAMETER}=<ticket>`.
  The token itself is never accepted in a URL (URLs end up in logs). Missing,
  wrong, used or expired credentials get HTTP 401 instead of the upgrade.
* **Send** one JSON text message per request, the body of `POST /v1/requests`:
  `{{"input": ..., "deadline_ms": 2000}}` (`deadline_ms` optional). Requests on
  one socket are served one after another.
* **Receive**, for each request: `{{"type": "accepted", "request_id"}}`, then
  zero or more `{{"type": "event", "data": ...}}` (what the handler passed to
  `ctx.emit`: progress, LLM tokens...), then either
  `{{"type": "output", "request_id", "output", "version", "latency_ms"}}` or
  `{{"type": "error", "status", "error": {{"type", "message", ...}}}}` with the
  error type and HTTP status `POST /v1/requests` would give.
* A message that is not JSON or not a valid request gets an `error` message
  (status 400 or 422) and the socket stays open. A message over the body size
  limit closes the socket with code 1009.
* Events that are not JSON, or that pile up beyond what a slow client reads,
  are dropped and counted in the output's `dropped_events`. If the agent's
  instance dies mid-request, the request runs again on its replacement and
  its events may repeat.
"""


class _GatewayApp(FastAPI):
    """FastAPI with the gateway's own checks outside the framework's middleware.

    Loopback, body size and the hot route run before the framework's
    error, telemetry and body-size wrappers, which cost the hot route a
    fifth of its time per request and add nothing to it: the fast path
    answers its own errors, unexpected ones included, as those would.
    Everything else passes on to them unchanged.
    """

    def __init__(self, outer: Callable[[ASGIApp], ASGIApp], **settings: Any) -> None:
        super().__init__(**settings)
        self._outer = outer

    def build_middleware_stack(self) -> ASGIApp:
        return self._outer(super().build_middleware_stack())


def create_app(
    service: AgentService, *, token: str, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    mounts: Sequence[Mount] = (), tickets: TicketBook | None = None, fast_path: bool = True,
) -> FastAPI:
    """The gateway's ASGI application, serving ``service`` to holders of ``token``.

    ``max_body_bytes`` bounds HTTP bodies and WebSocket messages alike.
    ``tickets``: the book of one-time tickets (a fresh one by default; pass
    one with an injected clock to test expiry).
    ``mounts``: each is called ``mount(app, service, token)`` to add routes
    of its own (the supervisor mounts the dashboard under ``/ui/`` so).
    ``fast_path=False`` sends ``POST /v1/requests`` through the framework's
    routing too (the same answers, slower: for comparing the two).
    """
    if not isinstance(service, AgentService):
        raise InvalidArgument(
            "service must implement AgentService (async submit(), feedback(), versions(); "
            f"status(), metrics()), got {type(service).__name__}"
        )
    auth = BearerAuth(token)

    def outer(inner: ASGIApp) -> ASGIApp:
        if fast_path:
            inner = FastRequests(inner, service=service, auth=auth)
        return LoopbackOnlyMiddleware(BodyLimitMiddleware(inner, max_body_bytes=max_body_bytes))

    app = _GatewayApp(
        outer,
        title="Project O",
        version=__version__,
        summary="The HTTP API of a crash-proof runtime for self-evolving agents.",
        description=_DESCRIPTION,
    )
    install_error_handlers(app)
    # One book for every ticket this gateway issues (the dashboard's login too).
    tickets = app.state.tickets = tickets if tickets is not None else TicketBook()
    app.include_router(_open_routes(service))
    app.include_router(_v1_routes(service, auth))
    app.include_router(_ticket_routes(auth, tickets))
    app.include_router(_evolution_routes(service, auth))
    app.include_router(quarantine_routes(service, auth, _QUARANTINE_ERRORS))
    app.include_router(chat_router(service, auth, {**_V1_ERRORS, **_SUBMIT_ERRORS}))
    app.include_router(_stream_route(service, auth, tickets, max_body_bytes))
    for mount in mounts:
        mount(app, service, token)
    _with_body_defs(app)
    return app


def _open_routes(service: AgentService) -> APIRouter:
    router = APIRouter()

    @router.get("/healthz", response_model=HealthReply, tags=["health"])
    async def healthz() -> HealthReply:
        """The gateway is up (no token needed; it says nothing about the agent)."""
        return HealthReply(ok=True)

    @router.get(
        "/metrics",
        tags=["metrics"],
        response_class=Response,
        responses={
            200: {
                "description": "Prometheus text format.",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            }
        },
    )
    async def metrics() -> Response:
        """Requests, latencies, errors, restarts, WAL and memory figures for Prometheus.

        Open, like /healthz: it changes nothing, and scrapers rarely hold tokens.
        """
        scrape = service.metrics()
        return Response(scrape.body, media_type=scrape.content_type)

    return router


def _v1_routes(service: AgentService, auth: BearerAuth) -> APIRouter:
    router = APIRouter(prefix="/v1", dependencies=[Depends(auth)], responses=_V1_ERRORS)

    @router.post(
        "/requests",
        response_model=SubmitReply,
        responses=_SUBMIT_ERRORS,
        openapi_extra=_body_schema(SubmitRequest, json_values=("input",)),
        tags=["requests"],
    )
    async def submit_request(
        submission: Annotated[SubmitRequest, Depends(read_submission)],
    ) -> Response:
        """Send one input to the agent and wait for its output."""
        # FastRequests answers this route before it gets here; the same code either way
        return await submit(service, submission)

    @router.post(
        "/feedback",
        status_code=202,
        response_model=FeedbackReply,
        responses=_FEEDBACK_ERRORS,
        openapi_extra=_body_schema(FeedbackRequest),
        tags=["feedback"],
    )
    async def feedback(
        body: Annotated[FeedbackRequest, Depends(read_feedback)],
    ) -> FeedbackReply:
        """Rate the answer to a recent request (-1 bad .. 1 good).

        Stored in the catalog with the version that answered, then handed to
        the agent's `on_feedback` hooks; `delivered` says whether they ran.
        """
        receipt = await service.feedback(body.request_id, body.score, body.comment)
        return FeedbackReply(
            stored=receipt.stored,
            delivered=receipt.delivered,
            version=receipt.version,
            reason=receipt.reason,
        )

    @router.get("/versions", response_model=VersionsReply, tags=["versions"])
    async def versions() -> dict[str, Any]:
        """Every version of the agent the vault knows, oldest first, and the one serving."""
        return await service.versions()

    @router.get("/status", response_model=dict[str, Any], tags=["status"])
    async def status() -> dict[str, Any]:
        """The supervisor's view: its pid, heart pid, instances, vault, recent events."""
        return service.status()

    return router


_EXPERIMENT_ERRORS: dict[int | str, dict[str, Any]] = {
    **_BODY_ERRORS,
    404: _error("UnknownExperiment: no experiment has this id."),
    409: _error("ExperimentConflict: another experiment is running (or it is not proposed)."),
    422: _error("InvalidRequest / CandidateInvalid: the body or the candidate is invalid "
                "(does not compile, does not import: the reason says why)."),
}


#: what a client can do next with the id of a new experiment (OpenAPI links:
#: a stateful client such as schemathesis follows them)
_EXPERIMENT_LINKS: dict[int | str, dict[str, Any]] = {201: {"links": {
    "GetExperiment": {"operationId": "get_experiment",
                      "parameters": {"experiment_id": "$response.body#/id"}},
    "ApproveExperiment": {"operationId": "approve_experiment",
                          "parameters": {"experiment_id": "$response.body#/id"}},
}}}


def _evolution_routes(service: AgentService, auth: BearerAuth) -> APIRouter:
    router = APIRouter(prefix="/v1/evolution", dependencies=[Depends(auth)],
                       responses=_V1_ERRORS, tags=["evolution"])

    def evolution(name: str) -> Any:
        return service_method(service, name, "this service runs no evolution experiments")

    @router.post("/experiments", status_code=201, response_model=ExperimentSummary,
                 responses={**_EXPERIMENT_ERRORS, **_EXPERIMENT_LINKS},
                 openapi_extra=_body_schema(ExperimentRequest))
    async def create_experiment(
        body: Annotated[ExperimentRequest, Depends(read_experiment)],
    ) -> dict[str, Any]:
        """Test a candidate version: checkpoint, validate, shadow, canary, promote or roll back."""
        result: dict[str, Any] = await evolution("create_experiment")(
            body.model_dump(exclude_none=True))
        return result

    @router.get("/experiments", response_model=dict[str, Any])
    async def list_experiments() -> dict[str, Any]:
        """Every experiment, newest first."""
        result: dict[str, Any] = await evolution("experiments")()
        return result

    @router.get("/experiments/{experiment_id}", response_model=dict[str, Any],
                responses=_EXPERIMENT_ERRORS, operation_id="get_experiment")
    async def get_experiment(experiment_id: str) -> dict[str, Any]:
        """One experiment: stage, status, samples, statistics, decision, reason, timeline."""
        result: dict[str, Any] = await evolution("experiment")(experiment_id)
        return result

    @router.post("/experiments/{experiment_id}/approve", response_model=ExperimentSummary,
                 responses=_EXPERIMENT_ERRORS, operation_id="approve_experiment")
    async def approve_experiment(experiment_id: str) -> dict[str, Any]:
        """Start an experiment the agent proposed with ctx.evolve (autonomy "propose")."""
        result: dict[str, Any] = await evolution("approve_experiment")(experiment_id)
        return result

    return router


async def read_experiment(request: Request) -> ExperimentRequest:
    """Parse and validate the body of ``POST /v1/evolution/experiments`` (415, 400, 422)."""
    return await read_body(request, ExperimentRequest, '{"kind": "shadow", "candidate": {...}}')


def _ticket_routes(auth: BearerAuth, tickets: TicketBook) -> APIRouter:
    router = APIRouter(prefix="/v1", dependencies=[Depends(auth)], responses=_V1_ERRORS)

    @router.post("/tickets", response_model=TicketReply, tags=["streaming"])
    async def issue_ticket() -> TicketReply:
        """A one-time ticket for the `/v1/stream` WebSocket, where headers cannot be set.

        Good once, at `/v1/stream` only, for 30 seconds: connect to
        `/v1/stream?ticket=<ticket>`. The API token is never accepted in a URL.
        """
        ticket = tickets.issue(STREAM_PATH, STREAM_TICKET_TTL_S)
        return TicketReply(ticket=ticket, path=STREAM_PATH, expires_in_s=STREAM_TICKET_TTL_S)

    return router


def _stream_route(service: AgentService, auth: BearerAuth, tickets: TicketBook,
                  max_message_bytes: int) -> APIRouter:
    router = APIRouter()

    @router.websocket(STREAM_PATH)
    async def stream(websocket: WebSocket) -> None:
        session = StreamSession(websocket, service, max_message_bytes=max_message_bytes)
        await session.run(auth, tickets)

    return router


async def read_submission(request: Request) -> SubmitRequest:
    """Parse and validate the body of ``POST /v1/requests`` (415, 400, 422)."""
    return await read_body(request, SubmitRequest)


async def read_feedback(request: Request) -> FeedbackRequest:
    """Parse and validate the body of ``POST /v1/feedback`` (415, 400, 422)."""
    return await read_body(request, FeedbackRequest, '{"request_id": "...", "score": 1}')

