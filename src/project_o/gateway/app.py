"""The FastAPI application: the routes and what each one answers.

::

    GET  /healthz        open     {"ok": true}
    GET  /openapi.json   open     this API, described
    POST /v1/requests    Bearer   SubmitRequest ─▶ service.submit() ─▶ SubmitReply
    GET  /v1/status      Bearer   service.status(), as is

What a ``POST /v1/requests`` passes through, and who may refuse it::

    BodyLimitMiddleware   413  body over max_body_bytes (counted as it arrives)
    routing               404 / 405
    BearerAuth            401  missing or wrong token (before the body is parsed)
    read_submission       415 not JSON, 400 invalid JSON, 422 fields wrong or unknown
    service.submit        502 PoisonRequest / RequestFailed, 503 NoInstanceAvailable,
                          504 RequestTimeout
    _reply                502 the agent's output is not JSON
                          200 SubmitReply

Every refusal has the body ``{"error": {"type", "message", ...}}``
(:mod:`project_o.gateway.problems`).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from pydantic import ValidationError

from project_o import __version__
from project_o.errors import InvalidArgument
from project_o.gateway.auth import BearerAuth
from project_o.gateway.limits import DEFAULT_MAX_BODY_BYTES, BodyLimitMiddleware
from project_o.gateway.models import ErrorReply, HealthReply, SubmitReply, SubmitRequest
from project_o.gateway.problems import APIError, describe_validation_errors, install_error_handlers
from project_o.gateway.service import AgentService, RequestResult

__all__ = ["create_app", "read_submission"]

# How much of an unacceptable Content-Type header we echo back in the message.
_ECHO_LIMIT = 100


def _error(description: str, **extra: Any) -> dict[str, Any]:
    return {"model": ErrorReply, "description": description, **extra}


_V1_ERRORS: dict[int | str, dict[str, Any]] = {
    401: _error("Missing or wrong `Authorization: Bearer <token>`."),
    413: _error("The body is over the gateway's size limit."),
    500: _error("InternalError: a bug in the gateway or the service; the server log has it."),
}
_SUBMIT_ERRORS: dict[int | str, dict[str, Any]] = {
    400: _error("InvalidJSON: the body is empty or not valid JSON."),
    415: _error("UnsupportedMediaType: the body is not sent as application/json."),
    422: _error(
        "InvalidRequest: the JSON does not match the request schema; "
        "`fields` names each unknown or invalid field."
    ),
    502: _error(
        "PoisonRequest: the request killed two agent instances in a row and was "
        "quarantined. RequestFailed: the agent's handler raised (`kind` names the "
        "exception). InvalidOutput: the agent's output is not JSON."
    ),
    503: _error(
        "NoInstanceAvailable: no agent instance can take the request yet.",
        headers={
            "Retry-After": {
                "description": "Seconds to wait before retrying.",
                "schema": {"type": "integer"},
            }
        },
    ),
    504: _error("RequestTimeout: the deadline passed before the agent answered."),
}
# The body is parsed by read_submission (so auth comes first and the errors
# are ours), which hides it from FastAPI; describe it here instead.
_SUBMIT_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": SubmitRequest.model_json_schema()}},
    }
}


def create_app(
    service: AgentService, *, token: str, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
) -> FastAPI:
    """The gateway's ASGI application, serving ``service`` to holders of ``token``."""
    if not isinstance(service, AgentService):
        raise InvalidArgument(
            f"service must implement AgentService (async submit(), status()), "
            f"got {type(service).__name__}"
        )
    app = FastAPI(
        title="Project O",
        version=__version__,
        summary="The HTTP API of a crash-proof runtime for self-evolving agents.",
    )
    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=max_body_bytes)
    app.include_router(_open_routes())
    app.include_router(_v1_routes(service, BearerAuth(token)))
    return app


def _open_routes() -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/healthz", response_model=HealthReply)
    async def healthz() -> HealthReply:
        """The gateway is up (no token needed; it says nothing about the agent)."""
        return HealthReply(ok=True)

    return router


def _v1_routes(service: AgentService, auth: BearerAuth) -> APIRouter:
    router = APIRouter(prefix="/v1", dependencies=[Depends(auth)], responses=_V1_ERRORS)

    @router.post(
        "/requests",
        response_model=SubmitReply,
        responses=_SUBMIT_ERRORS,
        openapi_extra=_SUBMIT_BODY,
        tags=["requests"],
    )
    async def submit_request(
        submission: Annotated[SubmitRequest, Depends(read_submission)],
    ) -> Response:
        """Send one input to the agent and wait for its output."""
        deadline_ms = submission.deadline_ms
        deadline_s = None if deadline_ms is None else deadline_ms / 1000
        result = await service.submit(submission.input, deadline_s=deadline_s)
        return _reply(result)

    @router.get("/status", response_model=dict[str, Any], tags=["status"])
    async def status() -> dict[str, Any]:
        """The supervisor's view: its pid, heart pid, instances, vault, recent events."""
        return service.status()

    return router


async def read_submission(request: Request) -> SubmitRequest:
    """Parse and validate the body of ``POST /v1/requests`` (415, 400, 422)."""
    _check_content_type(request.headers.get("content-type"))
    data = _parse_json(await request.body())
    try:
        return SubmitRequest.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        message, fields = describe_validation_errors(errors)
        raise APIError(422, "InvalidRequest", message, fields=fields) from exc


def _check_content_type(value: str | None) -> None:
    if value is None:
        return  # a bare client (or a hand-typed curl) that names none: take it as JSON
    media_type = value.split(";", 1)[0].strip().lower()
    if media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    ):
        return
    raise APIError(
        415,
        "UnsupportedMediaType",
        f"expected Content-Type: application/json, got {value[:_ECHO_LIMIT]!r}; "
        "send the body as JSON",
    )


def _parse_json(raw: bytes) -> Any:
    if not raw.strip():
        raise APIError(
            400,
            "InvalidJSON",
            'the request body is empty; expected a JSON object like {"input": ...}',
        )
    try:
        return json.loads(raw, parse_constant=_refuse_constant)
    except RecursionError as exc:
        raise APIError(
            400, "InvalidJSON", "the request body nests arrays or objects too deeply to parse"
        ) from exc
    except ValueError as exc:  # JSONDecodeError, or bytes that are not UTF-8/16/32
        raise APIError(400, "InvalidJSON", f"the request body is not valid JSON: {exc}") from exc


def _refuse_constant(name: str) -> Any:
    # Python's json reads NaN and Infinity, but they are not JSON (RFC 8259 §6).
    raise ValueError(f"{name} is not a JSON value")


def _reply(result: RequestResult) -> Response:
    """``result`` as JSON; a 502 if the agent's output cannot be JSON."""
    payload = {
        "request_id": result.request_id,
        "output": result.output,
        "version": result.version,
        "latency_ms": result.latency_ms,
    }
    try:
        body = json.dumps(
            payload, allow_nan=False, ensure_ascii=False, separators=(",", ":")
        ).encode("utf-8")
    except (TypeError, ValueError) as exc:  # bytes, sets, NaN, lone surrogates...
        raise APIError(
            502,
            "InvalidOutput",
            f"the agent returned output that cannot be sent as JSON ({exc}); "
            "make the agent return JSON values only",
            request_id=result.request_id,
        ) from exc
    return Response(body, media_type="application/json")
