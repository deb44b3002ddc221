"""The JSON bodies of the HTTP API, as pydantic models (and so in the OpenAPI).

::

    POST /v1/requests   {"input": <any JSON>, "deadline_ms": 2000}          SubmitRequest
              200 ◀──   {"request_id", "output", "version", "latency_ms"}  SubmitReply
    WS /v1/stream  ──▶  the same SubmitRequest, one per message
    POST /v1/feedback   {"request_id", "score": -1..1, "comment"}          FeedbackRequest
              202 ◀──   {"stored", "delivered", "version", "reason"}       FeedbackReply
    GET /v1/versions ◀─ {"serving", "versions": [VersionInfo, ...]}       VersionsReply
    POST /v1/evolution/experiments  {"kind", "candidate", ...}              ExperimentRequest
              201 ◀──   {"id", "kind", "candidate_version", ...}           ExperimentSummary
          4xx/5xx ◀──   {"error": {"type", "message", ...}}                 ErrorReply
    GET /healthz  ◀──   {"ok": true}                                        HealthReply
    POST /v1/tickets ◀─ {"ticket", "path", "expires_in_s"}                  TicketReply
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.config import JsonDict

__all__ = [
    "JSON_VALUE_SCHEMA",
    "MAX_COMMENT_CHARS",
    "MAX_DEADLINE_MS",
    "MAX_REQUEST_ID_CHARS",
    "ErrorInfo",
    "ErrorReply",
    "ExperimentRequest",
    "ExperimentSummary",
    "FeedbackReply",
    "FeedbackRequest",
    "FilesCandidate",
    "HealthReply",
    "OperatorCandidate",
    "ParamsOnlyCandidate",
    "SourceCandidate",
    "SubmitReply",
    "SubmitRequest",
    "TicketReply",
    "VersionInfo",
    "VersionsReply",
]

# One day. No request legitimately waits longer, and a bound keeps an absurd
# integer (JSON allows 10**400) from overflowing the float seconds the
# service is given.
MAX_DEADLINE_MS = 86_400_000
# Request ids the service issues are 32 hex characters; anything much longer
# is not one of ours, and the bound keeps junk out of the catalog.
MAX_REQUEST_ID_CHARS = 128
# A few paragraphs: room for what a person types into a feedback box, and a
# bound on what one call adds to the catalog.
MAX_COMMENT_CHARS = 4096


#: what ``input`` may hold, recursively: the JSON the agent's wire can carry
#: (the gateway's OpenAPI document names it ``JSONValue``)
JSON_VALUE_SCHEMA: dict[str, Any] = {"anyOf": [
    {"type": "null"},
    {"type": "boolean"},
    {"type": "integer", "minimum": -(2**63), "maximum": 2**64 - 1},
    {"type": "number", "not": {"type": "integer"}},
    {"type": "string"},
    {"type": "array", "items": {"$ref": "#/components/schemas/JSONValue"}},
    {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/JSONValue"}},
]}


class SubmitRequest(BaseModel):
    """One request for the agent."""

    model_config = ConfigDict(extra="forbid")

    input: Any = Field(
        description="What the agent receives: any JSON value (null included). Integers must "
                    "fit in 64 bits and strings have no lone surrogates: the agent's wire "
                    "(MessagePack) carries nothing else.",
    )
    deadline_ms: float | None = Field(
        default=None,
        gt=0,
        le=MAX_DEADLINE_MS,
        allow_inf_nan=False,
        # strict: "100" is a client bug we would rather name than guess at;
        # any JSON number (2, 2.0, 2.5) is a number of milliseconds.
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


class FeedbackRequest(BaseModel):
    """A user's verdict on one answer."""

    model_config = ConfigDict(extra="forbid")

    request_id: str = Field(
        min_length=1,
        max_length=MAX_REQUEST_ID_CHARS,
        strict=True,
        description="The `request_id` of the answer being rated (from /v1/requests or /v1/stream).",
    )
    score: float = Field(
        ge=-1,
        le=1,
        strict=True,
        allow_inf_nan=False,
        description="How good the answer was: -1 (bad) .. 1 (good).",
    )
    comment: str = Field(
        default="",
        max_length=MAX_COMMENT_CHARS,
        strict=True,
        description="Optional words on why.",
    )


class FeedbackReply(BaseModel):
    """What became of the feedback."""

    stored: bool = Field(description="It is in the catalog, with the version that answered.")
    delivered: bool = Field(description="The agent's on_feedback hooks ran on it.")
    version: str = Field(description="The agent version that answered the rated request.")
    reason: str | None = Field(
        default=None, description="Why it was not delivered (null when it was)."
    )


class VersionInfo(BaseModel):
    """One version of the agent, as the catalog records it."""

    id: str = Field(description="Content hash of the version's source.")
    status: str = Field(description="serving, good, rejected, candidate...")
    reason: str = Field(description="Why it has that status.")
    parents: list[str] = Field(description="The versions it was derived from.")
    operator: str = Field(description="Who made it: user, or the mutation operator.")
    created_at: float = Field(description="When it was recorded, in unix seconds.")
    serving: bool = Field(description="Whether this is the version answering requests now.")


class VersionsReply(BaseModel):
    """Every version the vault knows, oldest first, and the one serving."""

    serving: str = Field(description="The id of the version answering requests now.")
    versions: list[VersionInfo]


class SourceCandidate(BaseModel):
    """The candidate is this agent file."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field(description="The agent file's text.")


class FilesCandidate(BaseModel):
    """The candidate is these files (an agent package)."""

    model_config = ConfigDict(extra="forbid")

    files: dict[str, str] = Field(description="Relative path -> file text.")


class OperatorCandidate(BaseModel):
    """The candidate is made from the serving version by an operator."""

    model_config = ConfigDict(extra="forbid")

    operator: str = Field(description="A name from default_operators(), or auto (the bandit).")


class ParamsOnlyCandidate(BaseModel):
    """The candidate is the serving version with other ``params`` (which must be given)."""

    model_config = ConfigDict(extra="forbid")


#: an empty candidate is only a candidate when params say what changes; JSON
#: Schema cannot compare two fields any other way than this anyOf
_CANDIDATE_OR_PARAMS: JsonDict = {"anyOf": [
    {"properties": {"candidate": {"minProperties": 1}}},
    {"required": ["params"], "properties": {"params": {"type": "object", "minProperties": 1}}},
]}


class ExperimentRequest(BaseModel):
    """A candidate version to test against the serving one (shadow, then canary)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_CANDIDATE_OR_PARAMS)

    kind: Literal["shadow", "canary"] = Field(
        description="shadow: a shadow stage first, then the canary; canary: straight to it.")
    candidate: SourceCandidate | FilesCandidate | OperatorCandidate | ParamsOnlyCandidate = Field(
        description='Exactly one of {"source": "<agent file text>"}, {"files": {"relpath": '
                    '"text"}}, {"operator": "<name from default_operators()> | auto"}; or {} '
                    'with params.')
    hypothesis: str | None = Field(default=None, max_length=MAX_COMMENT_CHARS,
                                   description="Why this candidate should be better.")
    params: dict[str, Any] | None = Field(default=None,
                                          description="Evolvable param values to override.")
    mode: Literal["mirror", "split"] | None = Field(
        default=None, description="Shadow mode: mirror (compared, never returned; default) "
                                  "or split (its answers are returned).")
    share: float | None = Field(default=None, gt=0, le=1,
                                description="Share of requests the shadow sees (default 0.1).")
    stages: list[Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)]] | None = Field(
        default=None, min_length=1,
        description="Canary shares in (0, 1], applied in increasing order (default "
                    "[0.1, 0.5, 1.0]).")
    min_samples: int | None = Field(default=None, ge=2, description="Per arm and stage (50).")
    max_samples: int | None = Field(default=None, ge=2,
                                    description="Candidate samples before 'no improvement' (500).")
    metric: Literal["latency", "errors", "feedback"] | None = Field(
        default=None, description="Decide on this metric only (default: all three).")
    validation_requests: int | None = Field(
        default=None, ge=0, description="Requests watched after promotion (50).")
    promote_equal: bool | None = Field(
        default=None, description="Promote a candidate found equal (default: keep the main).")
    latency_margin: float | None = Field(
        default=None, ge=0, lt=1,
        description="How much faster, as a share of the main's latency, a candidate must be "
                    "with confidence to count as better on latency (0.05).")

    @field_validator("stages")
    @classmethod
    def _in_increasing_order(cls, stages: list[float] | None) -> list[float] | None:
        return None if stages is None else sorted(stages)

    @model_validator(mode="after")
    def _candidate_or_params(self) -> ExperimentRequest:
        if isinstance(self.candidate, ParamsOnlyCandidate) and not self.params:
            raise ValueError("candidate is empty: give one of source, files or operator, "
                             "or params to override")
        return self


class ExperimentSummary(BaseModel):
    """An experiment just created."""

    id: str
    kind: str
    candidate_version: str
    baseline_version: str | None
    stage: str
    status: str


class TicketReply(BaseModel):
    """A one-time ticket: the API token's stand-in in a WebSocket URL."""

    ticket: str = Field(description="Good once, at `path` only, for `expires_in_s` seconds.")
    path: str = Field(description="The one path it opens: `/v1/stream`.")
    expires_in_s: float = Field(description="Seconds it stays valid from now.")
