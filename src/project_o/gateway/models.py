"""The JSON bodies of the HTTP API, as pydantic models (and so in the OpenAPI).

::

    POST /v1/requests   {"input": <any JSON>, "deadline_ms": 2000}          SubmitRequest
              200 ◀──   {"request_id", "output", "version", "latency_ms"}  SubmitReply
          4xx/5xx ◀──   {"error": {"type", "message", ...}}                 ErrorReply
    GET /healthz  ◀──   {"ok": true}                                        HealthReply
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "MAX_DEADLINE_MS",
    "ErrorInfo",
    "ErrorReply",
    "HealthReply",
    "SubmitReply",
    "SubmitRequest",
]

# One day. No request legitimately waits longer, and a bound keeps an absurd
# integer (JSON allows 10**400) from overflowing the float seconds the
# service is given.
MAX_DEADLINE_MS = 86_400_000


class SubmitRequest(BaseModel):
    """One request for the agent."""

    model_config = ConfigDict(extra="forbid")

    input: Any = Field(description="What the agent receives: any JSON value (null included).")
    deadline_ms: int | None = Field(
        default=None,
        gt=0,
        le=MAX_DEADLINE_MS,
        # strict: "100" or 100.0 is a client bug we would rather name than guess at.
        strict=True,
        description=(
            "Give up after this many milliseconds and answer 504. "
            "Omitted: the service's own default applies."
        ),
    )


class SubmitReply(BaseModel):
    """The agent's answer to one request."""

    request_id: str = Field(description="The id the service gave the request (for logs).")
    output: Any = Field(description="What the agent returned.")
    version: str = Field(description="The agent version that served the request.")
    latency_ms: float = Field(description="Time from acceptance to answer, in milliseconds.")


class ErrorInfo(BaseModel):
    """What went wrong. Some errors add fields (``request_id``, ``fields``...)."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="A stable name for the error, e.g. PoisonRequest or InvalidJSON.")
    message: str = Field(description="What was expected, what happened, what to do.")


class ErrorReply(BaseModel):
    """The body of every 4xx and 5xx answer."""

    error: ErrorInfo


class HealthReply(BaseModel):
    """The gateway is up and answering."""

    ok: bool
