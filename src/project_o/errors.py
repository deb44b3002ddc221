"""The exceptions Project O raises, in one tree.

Every error a user can meet derives from :class:`ProjectOError`; where a
builtin describes the same kind of failure, the class inherits it too, so
``except ValueError`` keeps working for callers who do not know us::

    ProjectOError
    ├── ProtocolError                  a peer broke the wire protocol
    │   ├── FrameTooLarge              length prefix over the configured maximum
    │   ├── FrameDecodeError           bytes that are not a valid frame
    │   ├── UnknownMessageType         a well-formed frame of a type we do not speak
    │   ├── UnexpectedMessageType      a type this peer may not send on this channel
    │   └── ConnectionClosed           EOF (clean between frames, or inside one)
    ├── VaultError                     durable storage
    │   ├── WALCorruption              a bad record that is not a torn tail
    │   ├── WALFatalError              a write or fsync failed; the WAL is closed for good
    │   ├── VaultClosed                used after close()
    │   ├── VaultKeyError              sealed data names a key that is not configured
    │   ├── CheckpointCorrupt          a checkpoint failed a hash or layout check
    │   └── CatalogError               SQLite catalog / migrations
    │       └── VersionConflict        a version id already names different source
    ├── ServiceError                   the agent service could not answer a request
    │   ├── PoisonRequest              the request killed two instances in a row (HTTP 502)
    │   ├── RequestFailed              the agent's handler raised (HTTP 502)
    │   ├── NoInstanceAvailable        no live instance to serve it yet (HTTP 503)
    │   │   └── Overloaded             more requests wait than the supervisor queues (HTTP 503)
    │   ├── RequestTimeout (TimeoutError)  its deadline passed first (HTTP 504)
    │   ├── UnknownRequest (LookupError)   no recent request has that id (HTTP 404)
    │   ├── CandidateInvalid           a candidate version failed validation (HTTP 422)
    │   ├── ExperimentConflict         another experiment is running (HTTP 409)
    │   ├── UnknownExperiment (LookupError)  no experiment has that id (HTTP 404)
    │   ├── UnknownOverlay (LookupError)     no canary overlay has that id (HTTP 404)
    │   └── OverlayNotApplicable       the overlay is not quarantined (HTTP 409)
    ├── GatewayError                   the HTTP gateway could not start or serve
    ├── AgentLoadError (ImportError)   agent code failed to import, or holds no single Agent
    ├── ZygoteError                    a zygote died, or could not fork an instance
    ├── LLMError                       the LLM endpoint failed, or answered nonsense
    ├── NativeBuildError               C source of a native module failed to compile or load
    └── InvalidArgument (ValueError)   a caller passed something we cannot use

Messages say what was expected, what happened, and what to do next.
"""

from __future__ import annotations

from typing import Any

__all__ = [  # noqa: RUF022 - in the order of the tree above
    "ProjectOError",
    "ProtocolError",
    "FrameTooLarge",
    "FrameDecodeError",
    "UnknownMessageType",
    "UnexpectedMessageType",
    "ConnectionClosed",
    "VaultError",
    "WALCorruption",
    "WALFatalError",
    "VaultClosed",
    "VaultKeyError",
    "CheckpointCorrupt",
    "CatalogError",
    "VersionConflict",
    "ServiceError",
    "PoisonRequest",
    "RequestFailed",
    "NoInstanceAvailable",
    "Overloaded",
    "RequestTimeout",
    "UnknownRequest",
    "CandidateInvalid",
    "ExperimentConflict",
    "UnknownExperiment",
    "UnknownOverlay",
    "OverlayNotApplicable",
    "GatewayError",
    "AgentLoadError",
    "ZygoteError",
    "LLMError",
    "NativeBuildError",
    "InvalidArgument",
]


class ProjectOError(Exception):
    """Root of every error raised by Project O."""


class ProtocolError(ProjectOError):
    """The peer sent something that violates the wire protocol.

    The supervisor answers any of these by killing and replacing the
    instance that sent it; it never crashes on what an instance sends.
    """


class FrameTooLarge(ProtocolError):
    """A frame's length prefix exceeds the configured maximum.

    Raised *before* the payload is read, so an attacker cannot make us
    allocate the advertised size.
    """

    def __init__(self, size: int, limit: int, message_type: str | None = None) -> None:
        what = "frame" if message_type is None else f"{message_type!s} frame"
        super().__init__(
            f"{what} of {size} bytes exceeds the maximum of {limit} bytes; "
            "raise max_frame_size if such frames are legitimate"
        )
        self.size = size
        self.limit = limit
        self.message_type = message_type


class FrameDecodeError(ProtocolError):
    """The frame's bytes are not a MessagePack map with the required keys."""


class UnknownMessageType(ProtocolError):
    """A well-formed frame whose ``type`` is not one we speak."""

    def __init__(self, message_type: object) -> None:
        super().__init__(f"unknown message type {message_type!r}")
        self.message_type = message_type


class UnexpectedMessageType(ProtocolError):
    """A well-formed frame of a type this peer may not send on this channel.

    A zygote never sends a heartbeat, an instance never sends a restore:
    such a frame is a forgery, refused before its payload is read where
    its size allows.
    """

    def __init__(self, message_type: object, allowed: object) -> None:
        super().__init__(f"message type {message_type!r} may not be sent here; "
                         f"this peer may send only {allowed}")
        self.message_type = message_type


class ConnectionClosed(ProtocolError):
    """The stream ended.

    ``clean`` is True when EOF fell between frames (the peer closed
    politely) and False when it fell inside a frame (the peer died or the
    stream was cut).
    """

    def __init__(self, clean: bool, detail: str = "") -> None:
        where = "between frames" if clean else "inside a frame"
        super().__init__(f"connection closed {where}{': ' + detail if detail else ''}")
        self.clean = clean


class VaultError(ProjectOError):
    """Durable storage failed or found something it will not trust."""


class WALCorruption(VaultError):
    """A WAL record is invalid somewhere other than the tail of the last segment.

    The vault refuses to open rather than silently skip acknowledged data.
    """

    def __init__(self, path: str, offset: int, reason: str) -> None:
        super().__init__(
            f"WAL corruption in {path} at offset {offset}: {reason}; "
            "run `project-o vault verify` for a full report and restore this "
            "segment from a backup"
        )
        self.path = path
        self.offset = offset
        self.reason = reason


class WALFatalError(VaultError):
    """A write or fsync failed (EIO, ENOSPC...).

    After an fsync error the kernel may have dropped the dirty pages, so a
    retry could report success for data that is gone. The WAL therefore
    refuses every further append; reopen it to recover what is on disk.
    """


class VaultClosed(VaultError):
    """The vault (or its WAL) was used after it was closed."""


class VaultKeyError(VaultError):
    """A sealed record or checkpoint names a key that is not configured.

    Not corruption: nothing is truncated or skipped, and recovery does not
    fall back to older data; supply the key (docs/design.md, "Encryption at rest").
    """


class CheckpointCorrupt(VaultError):
    """A checkpoint file failed its header or payload check."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"checkpoint {path} rejected: {reason}")
        self.path = path
        self.reason = reason


class CatalogError(VaultError):
    """The SQLite catalog could not be opened, migrated or written."""


class VersionConflict(CatalogError):
    """A version id is already recorded for different source text.

    Ids are content hashes, so this is either a forged id or a hash
    collision; either way the recorded version is kept and the new one
    refused.
    """


class ServiceError(ProjectOError):
    """The agent service could not answer a request.

    ``http_status`` is the status the gateway answers with; :meth:`details`
    gives the JSON-able fields it adds to the error body beside ``type``
    and ``message``. Tracebacks stay on the exception (for the log) and
    never go into :meth:`details`.
    """

    http_status: int = 500

    def __init__(self, message: str, *, request_id: str | None = None) -> None:
        super().__init__(message)
        self.request_id = request_id

    def details(self) -> dict[str, Any]:
        """Extra JSON-able fields for the error body."""
        return {} if self.request_id is None else {"request_id": self.request_id}


class PoisonRequest(ServiceError):
    """The request killed two instances in a row, so it was quarantined.

    It is not retried; sending the same input again will very likely meet
    the same fate. The message says what killed the instances.
    """

    http_status = 502


class RequestFailed(ServiceError):
    """The agent's handler raised while serving the request; the instance lives on.

    ``kind`` is the exception class the handler raised, ``agent_message``
    its text, ``traceback`` the instance-side traceback (for the log only).
    """

    http_status = 502

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        request_id: str | None = None,
        traceback: str | None = None,
    ) -> None:
        super().__init__(f"the agent's handler raised {kind}: {message}", request_id=request_id)
        self.kind = kind
        self.agent_message = message
        self.traceback = traceback

    def details(self) -> dict[str, Any]:
        return {**super().details(), "kind": self.kind}


class NoInstanceAvailable(ServiceError):
    """No live instance can take the request right now (starting, restarting).

    Transient: retry after ``retry_after_s`` seconds (the gateway sends it
    as ``Retry-After``).
    """

    http_status = 503

    def __init__(
        self, message: str, *, retry_after_s: float = 1.0, request_id: str | None = None
    ) -> None:
        super().__init__(message, request_id=request_id)
        self.retry_after_s = retry_after_s

    def details(self) -> dict[str, Any]:
        return {**super().details(), "retry_after_s": self.retry_after_s}


class Overloaded(NoInstanceAvailable):
    """Every instance is at its ``max_concurrency`` and the queue is full.

    Back-pressure: retry after ``retry_after_s`` seconds (``Retry-After``).
    """


class RequestTimeout(ServiceError, TimeoutError):
    """The request's deadline passed before the agent answered."""

    http_status = 504


class UnknownRequest(ServiceError, LookupError):
    """No request with that id was answered recently (feedback for an unknown id).

    The supervisor remembers which version answered each of its most recent
    requests, in memory; an id that was never issued, is too old, or was
    answered before the supervisor last restarted is unknown.
    """

    http_status = 404


class CandidateInvalid(ServiceError):
    """A candidate version failed validation (compile, params, import in its
    zygote, the agent's quick checks); the reason says which and why."""

    http_status = 422


class ExperimentConflict(ServiceError):
    """Another experiment is running; one at a time protects the baseline."""

    http_status = 409


class UnknownExperiment(ServiceError, LookupError):
    """No experiment has that id."""

    http_status = 404


class UnknownOverlay(ServiceError, LookupError):
    """No overlay of a canary's writes has that id (``project-o vault quarantine`` lists them)."""

    http_status = 404


class OverlayNotApplicable(ServiceError):
    """The overlay is not quarantined (still open, promoted or applied already)."""

    http_status = 409


class GatewayError(ProjectOError):
    """The HTTP gateway could not start (address in use, app startup failed)."""


class AgentLoadError(ProjectOError, ImportError):
    """Agent code could not be loaded: missing, failed to import, or ambiguous.

    ``traceback`` holds the import's traceback as text when the import
    itself raised (in a zygote, the traceback comes from that process).
    """

    def __init__(self, message: str, traceback: str | None = None) -> None:
        super().__init__(message)
        self.traceback = traceback

    def __str__(self) -> str:
        base = super().__str__()
        return f"{base}\n{self.traceback.rstrip()}" if self.traceback else base


class ZygoteError(ProjectOError):
    """A zygote died, broke its control protocol, or could not fork an instance.

    Instances forked by a dead zygote die with it (PR_SET_PDEATHSIG); start
    a new zygote to fork new ones.
    """


class LLMError(ProjectOError):
    """A chat completion failed: unreachable, timed out, refused, or malformed.

    Raised only after the retries allowed for transient failures (timeouts,
    lost connections, HTTP 408/409/429/5xx) are spent; ``attempts`` says
    how many were made, ``status`` is the last HTTP status (None when no
    response came). A malformed reply and a client error (other 4xx) are
    not retried: asking again would get the same answer. The message never
    contains the API key.
    """

    def __init__(self, message: str, *, status: int | None = None, attempts: int = 1) -> None:
        super().__init__(message)
        self.status = status
        self.attempts = attempts


class NativeBuildError(ProjectOError):
    """A native module's C source did not compile (or link, or load) within its limits.

    ``log`` holds the compiler's output, capped; the message names the
    reason (diagnostics, timeout, a limit hit, a disallowed flag).
    """

    def __init__(self, message: str, log: str = "") -> None:
        super().__init__(message)
        self.log = log

    def __str__(self) -> str:
        base = super().__str__()
        return f"{base}\n{self.log.rstrip()}" if self.log else base


class InvalidArgument(ProjectOError, ValueError):
    """A caller passed a value Project O cannot use."""
