"""Turning every failure into one JSON error shape, never a traceback.

::

    raised in a route / dependency          answered as
    ───────────────────────────────         ─────────────────────────────────────────
    APIError(status, type, msg)        ──▶  status  {"error": {"type", "message", ...}}
    ServiceError subclass              ──▶  .http_status, fields from .details()
                                            (503 also sets Retry-After)
    starlette HTTPException (404, 405) ──▶  its status, type from the reason phrase
    RequestValidationError             ──▶  422, the offending fields named
    anything else                      ──▶  500 InternalError (the traceback goes to
                                            the server log, never to the client)

The body-size limit answers from its middleware with the same shape
(:func:`error_body`), before any of this runs.
"""

from __future__ import annotations

import http
import math
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from project_o.errors import NoInstanceAvailable, ServiceError

__all__ = [
    "APIError",
    "api_error_response",
    "describe_validation_errors",
    "error_body",
    "install_error_handlers",
    "service_error_response",
    "service_method",
    "unexpected_error_response",
]


class APIError(StarletteHTTPException):
    """An answer other than 2xx that the gateway itself decides on (401, 400, 415...).

    ``error_type`` is the stable name in the body; ``extra`` adds fields.
    """

    def __init__(
        self,
        status_code: int,
        error_type: str,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(status_code=status_code, detail=message, headers=dict(headers or {}))
        self.error_type = error_type
        self.extra = extra


def service_method(service: object, name: str, missing: str) -> Any:
    """The service's method ``name``, or a 501 saying ``missing`` (an optional capability)."""
    method = getattr(service, name, None)
    if method is None:
        raise APIError(501, "NotImplemented", missing)
    return method


def error_body(error_type: str, message: str, **extra: Any) -> dict[str, Any]:
    """The JSON every error answer carries."""
    return {"error": {"type": error_type, "message": message, **extra}}


def describe_validation_errors(
    errors: Sequence[Any],
) -> tuple[str, list[dict[str, Any]]]:
    """A one-line message naming each bad field, and the per-field list.

    ``errors`` is pydantic's ``errors()`` list; the offending *values* are
    left out on purpose (they may be large or secret).
    """
    fields = [
        {
            "field": ".".join(str(part) for part in error["loc"] if part != "body") or "(body)",
            "problem": error["msg"],
            "code": error["type"],
        }
        for error in errors
    ]
    summary = "; ".join(f"{field['field']}: {field['problem']}" for field in fields)
    return f"invalid request body: {summary}", fields


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers drawn in the module docstring on ``app``."""
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected_error)


def service_error_response(exc: ServiceError) -> JSONResponse:
    """The answer to a :class:`ServiceError` (503 also says when to retry)."""
    headers = {}
    if isinstance(exc, NoInstanceAvailable):
        # Retry-After takes whole seconds (RFC 9110 §10.2.3); never say 0.
        headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after_s)))
    body = error_body(type(exc).__name__, str(exc), **exc.details())
    return JSONResponse(body, status_code=exc.http_status, headers=headers)


def api_error_response(exc: APIError) -> JSONResponse:
    """The answer to an :class:`APIError` the gateway raised itself."""
    body = error_body(exc.error_type, exc.detail, **exc.extra)
    return JSONResponse(body, status_code=exc.status_code, headers=dict(exc.headers or {}))


async def _service_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    return service_error_response(exc)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if isinstance(exc, APIError):
        return api_error_response(exc)
    message = f"{exc.detail} ({request.method} {request.url.path}); /openapi.json lists the API"
    body = error_body(_type_from_status(exc.status_code), message)
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = ", ".join(_allowed_methods(request))
    return JSONResponse(body, status_code=exc.status_code, headers=headers)


#: the methods a route of this API may serve (asked one by one: routers nest)
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this path.

    Starlette names only the first route that matched the path, but GET and
    POST on one path are two routes here (RFC 9110 §15.5.6 wants them all).
    """
    routes = request.app.router.routes
    return [method for method in _METHODS if any(
        route.matches({**request.scope, "method": method})[0] == Match.FULL for route in routes)]


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    message, fields = describe_validation_errors(exc.errors())
    return JSONResponse(error_body("InvalidRequest", message, fields=fields), status_code=422)


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    # Starlette re-raises after this answer, so the server log gets the traceback.
    return unexpected_error_response()


def unexpected_error_response() -> JSONResponse:
    """The 500 ``InternalError`` answer (the caller logs the traceback)."""
    message = "the gateway hit an unexpected error; the server log has the details"
    return JSONResponse(error_body("InternalError", message), status_code=500)


def _type_from_status(status_code: int) -> str:
    """``404`` -> ``NotFound``: the reason phrase in the style of our error names."""
    try:
        phrase = http.HTTPStatus(status_code).phrase
    except ValueError:
        return "HTTPError"
    return "".join(word[:1].upper() + word[1:] for word in phrase.replace("-", " ").split())
