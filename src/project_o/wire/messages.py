"""The message: what supervisor and instance say to each other.

A :class:`Message` is the decoded form of one frame (see
:mod:`project_o.wire.framing` for the bytes)::

    Message(type="request", data={"id": "r1", "input": ...}, metadata={}, timestamp=1.7e9)
            │                │                               │            │
            │                │                               │            └ unix seconds, float
            │                │                               └ free-form: tracing, origin...
            │                └ the payload the type defines (docs/design.md)
            └ a MessageType; any other string is refused

Construction checks the shape (a known type, two dicts, a finite
timestamp). Whether the *contents* of ``data`` and ``metadata`` can be sent
is checked when the message is encoded (:func:`ensure_packable`), so
decoding a large frame does not walk it twice.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from project_o.errors import InvalidArgument

__all__ = ["Message", "MessageType"]


class MessageType(StrEnum):
    """Every message type of the protocol; a frame of any other type is refused.

    Members compare equal to their string value (``MessageType.HELLO ==
    "hello"``). Who sends which type, and with what ``data``, is tabled in
    docs/design.md ("Wire protocol").
    """

    # Both channels.
    HELLO = "hello"
    SHUTDOWN = "shutdown"
    ERROR = "error"
    # Instance channel: liveness and traffic.
    HEARTBEAT = "heartbeat"
    REQUEST = "request"
    RESPONSE = "response"
    METRICS = "metrics"
    # Instance channel: what users say back, and what handlers stream out.
    FEEDBACK = "feedback"
    STREAM = "stream"
    # Instance channel: memory durability.
    WAL_ENTRY = "wal_entry"
    WAL_ACK = "wal_ack"
    CHECKPOINT = "checkpoint"
    CHECKPOINT_ACK = "checkpoint_ack"
    RESTORE = "restore"
    PROMOTE = "promote"
    # Instance channel: the model, called by the supervisor on an instance's behalf.
    LLM_CALL = "llm_call"
    LLM_TOKEN = "llm_token"
    LLM_RESULT = "llm_result"
    # Evolution and code loading.
    EVOLUTION_INTENT = "evolution_intent"
    EVOLUTION_RESULT = "evolution_result"
    LOAD_CODE = "load_code"
    HOT_RELOAD = "hot_reload"
    # Zygote control channel.
    FORK = "fork"
    FORKED = "forked"
    EXITED = "exited"
    KILL = "kill"


@dataclass(frozen=True, slots=True)
class Message:
    """One protocol message.

    ``type`` may be given as a :class:`MessageType` or its string value; it
    is stored as the :class:`MessageType`. ``data`` and ``metadata`` are
    maps whose keys are ``str`` (``bytes`` keys are also accepted on the
    wire). ``timestamp`` defaults to now, in unix seconds.

    Raises :class:`~project_o.errors.InvalidArgument` when a field has the
    wrong shape.
    """

    type: str
    data: dict[str, Any]
    metadata: dict[str, Any] = field(default_factory=dict)
    timestamp: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        # object.__setattr__: the dataclass is frozen; normalising in place
        # is the documented way to do it in __post_init__.
        object.__setattr__(self, "type", _message_type(self.type))
        object.__setattr__(self, "timestamp", _timestamp(self.timestamp))
        _require_dict("data", self.data)
        _require_dict("metadata", self.metadata)


_BY_VALUE: dict[str, MessageType] = {member.value: member for member in MessageType}


def _message_type(value: object) -> MessageType:
    if isinstance(value, MessageType):
        return value
    if isinstance(value, str):
        # a dict lookup: the Enum's own lookup cost a few percent of the supervisor's
        # CPU per request (every frame makes a Message)
        known_type = _BY_VALUE.get(value)
        if known_type is not None:
            return known_type
    known = ", ".join(member.value for member in MessageType)
    raise InvalidArgument(
        f"message type {value!r} is not part of the protocol; expected one of: {known}"
    )


def _timestamp(value: object) -> float:
    # bool is an int subclass, but True is no point in time.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidArgument(
            f"message timestamp must be unix seconds as a float, got {type(value).__name__}"
        )
    if not math.isfinite(value):
        raise InvalidArgument(f"message timestamp must be finite, got {value!r}")
    return float(value)


def _require_dict(name: str, value: object) -> None:
    if not isinstance(value, dict):
        raise InvalidArgument(
            f"message {name} must be a dict, got {type(value).__name__}; "
            f"wrap the value, e.g. {{'value': ...}}"
        )
