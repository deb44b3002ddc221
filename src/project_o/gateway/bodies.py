"""JSON in and out: the checks every body and message goes through.

::

    Content-Type ──check_content_type──▶ ok | 415 UnsupportedMediaType
    raw bytes    ──parse_json──────────▶ value | 400 InvalidJSON
    value        ──validate(Model)─────▶ model | 422 InvalidRequest (each bad field named,
                                              values the wire cannot carry included)
    RequestResult ──result_payload─────▶ dict ──dump_json──▶ bytes | 502 InvalidOutput

Shared by the HTTP routes (:mod:`~project_o.gateway.app`) and the
WebSocket stream (:mod:`~project_o.gateway.stream`), so both refuse the
same inputs with the same error types. Every refusal is an
:class:`~project_o.gateway.problems.APIError`.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from project_o.gateway.problems import APIError, describe_validation_errors
from project_o.supervisor.api import RequestResult
from project_o.wire.packable import find_unpackable

__all__ = [
    "check_content_type",
    "dump_json",
    "parse_body",
    "parse_json",
    "read_body",
    "result_payload",
    "validate",
]

# How much of an unacceptable Content-Type header we echo back in the message.
_ECHO_LIMIT = 100

_M = TypeVar("_M", bound=BaseModel)


def check_content_type(value: str | None) -> None:
    """Accept JSON media types (and no header at all); 415 otherwise."""
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


def parse_json(
    raw: bytes | str, *, what: str = "the request body", example: str = '{"input": ...}'
) -> Any:
    """``raw`` as a JSON value; 400 if it is empty or not strict JSON."""
    if not raw.strip():
        raise APIError(
            400, "InvalidJSON", f"{what} is empty; expected a JSON object like {example}"
        )
    try:
        return json.loads(raw, parse_constant=_refuse_constant)
    except RecursionError as exc:
        raise APIError(
            400, "InvalidJSON", f"{what} nests arrays or objects too deeply to parse"
        ) from exc
    except ValueError as exc:  # JSONDecodeError, or bytes that are not UTF-8/16/32
        raise APIError(400, "InvalidJSON", f"{what} is not valid JSON: {exc}") from exc


def validate(model: type[_M], data: Any) -> _M:
    """``data`` as ``model``; 422 naming each unknown or invalid field.

    Values JSON can carry but the agent's wire cannot (an integer beyond 64
    bits, a string with a lone surrogate, nesting past the wire's limit) are
    refused here too, with their place in the body: they would otherwise
    fail later, where the client could no longer be told which field.
    """
    found = find_unpackable(data)
    if found is not None:
        path, problem = found
        name = ".".join(str(step) for step in path) or "(body)"
        raise APIError(422, "InvalidRequest", f"invalid request body: {name}: {problem}",
                       fields=[{"field": name, "problem": problem, "code": "unrepresentable"}])
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        message, fields = describe_validation_errors(errors)
        raise APIError(422, "InvalidRequest", message, fields=fields) from exc


def parse_body(content_type: str | None, raw: bytes, model: type[_M],
               example: str = '{"input": ...}') -> _M:
    """A body with this Content-Type header, checked, parsed and validated as ``model``.

    415, 400, 422, in that order: the one sequence every JSON body goes
    through, whether a route reads it (:func:`read_body`) or the fast path
    (:mod:`~project_o.gateway.fast_path`) does.
    """
    check_content_type(content_type)
    return validate(model, parse_json(raw, example=example))


async def read_body(request: Request, model: type[_M], example: str = '{"input": ...}') -> _M:
    """Parse and validate a JSON body as ``model`` (415, 400, 422)."""
    return parse_body(request.headers.get("content-type"), await request.body(), model, example)


def result_payload(result: RequestResult) -> dict[str, Any]:
    """The fields every answer to a request carries."""
    return {
        "request_id": result.request_id,
        "output": result.output,
        "version": result.version,
        "latency_ms": result.latency_ms,
    }


def dump_json(payload: Any, *, request_id: str | None = None) -> bytes:
    """``payload`` as compact UTF-8 JSON; 502 if the agent put something un-JSON in it."""
    try:
        return json.dumps(
            payload, allow_nan=False, ensure_ascii=False, separators=(",", ":")
        ).encode("utf-8")
    except (TypeError, ValueError) as exc:  # bytes, sets, NaN, lone surrogates...
        raise APIError(
            502,
            "InvalidOutput",
            f"the agent returned output that cannot be sent as JSON ({exc}); "
            "make the agent return JSON values only",
            request_id=request_id,
        ) from exc


def _refuse_constant(name: str) -> Any:
    # Python's json reads NaN and Infinity, but they are not JSON (RFC 8259 §6).
    raise ValueError(f"{name} is not a JSON value")
