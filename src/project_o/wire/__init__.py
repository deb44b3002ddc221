"""The wire protocol between the supervisor and every process it runs.

One frame = a 4-byte big-endian length, then a MessagePack map
``{"type", "timestamp", "data", "metadata"}`` (layout drawn in
:mod:`project_o.wire.framing`)::

    Message ──encode_frame──> bytes ──socket / stream──> FrameDecoder.feed ──> Message
            ──write_message─────────────────────────────> read_message ──────> Message
            ──write_message_async───────────────────────> read_message_async ─> Message

Modules: ``messages`` (Message, MessageType), ``packable`` (what data may
hold), ``framing`` (bytes <-> Message, incremental decoder), ``limits``
(what a reader accepts from an untrusted peer: caps per type, an object
budget), ``transport`` (blocking sockets and asyncio streams). Errors live in
:mod:`project_o.errors` (FrameTooLarge, FrameDecodeError,
UnknownMessageType, ConnectionClosed, InvalidArgument).
"""

from __future__ import annotations

from project_o.wire.framing import (
    DEFAULT_MAX_FRAME_SIZE,
    FrameDecoder,
    decode_payload,
    encode_frame,
)
from project_o.wire.limits import DEFAULT_MAX_OBJECTS, FrameLimits
from project_o.wire.messages import Message, MessageType
from project_o.wire.packable import MAX_NESTING_DEPTH, Packed, ensure_packable
from project_o.wire.transport import (
    read_frame_async,
    read_message,
    read_message_async,
    write_message,
    write_message_async,
)

__all__ = [
    "DEFAULT_MAX_FRAME_SIZE",
    "DEFAULT_MAX_OBJECTS",
    "MAX_NESTING_DEPTH",
    "FrameDecoder",
    "FrameLimits",
    "Message",
    "MessageType",
    "Packed",
    "decode_payload",
    "encode_frame",
    "ensure_packable",
    "read_frame_async",
    "read_message",
    "read_message_async",
    "write_message",
    "write_message_async",
]
