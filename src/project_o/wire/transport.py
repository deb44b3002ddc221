"""Reading and writing frames on a socket (blocking) or an asyncio stream.

Each read takes exactly one frame off the stream::

    read 4 bytes ── EOF before any byte ─────────────> ConnectionClosed(clean=True)
        │        └─ EOF after 1-3 bytes ─────────────> ConnectionClosed(clean=False)
        ▼
    length > max_frame_size ─────────────────────────> FrameTooLarge  (payload left unread)
        ▼
    read length bytes ── EOF ────────────────────────> ConnectionClosed(clean=False)
        ▼
    decode_payload ──────────────────────────────────> Message | FrameDecodeError
                                                               | UnknownMessageType

A reset connection (ECONNRESET, EPIPE) is reported as
ConnectionClosed(clean=False), with the OS error as ``__cause__``, so a
caller needs one ``except`` for "the peer is gone".

The blocking reader grows its buffer as bytes arrive instead of
allocating the announced length up front: a peer that announces 64 MiB
and sends ten bytes costs ten bytes (plus one receive chunk), not 64 MiB.

With :class:`~project_o.wire.limits.FrameLimits` (a reader of an
untrusted peer), a frame is also checked on the head of its payload (its
type, that type's cap) before the rest is read, and the asyncio reader
decodes a large payload as it arrives, so it never holds the frame's
bytes and their decoded form at once, and stops at the object budget.

A socket timeout (``sock.settimeout``) surfaces as :class:`TimeoutError`.
If it fires inside a frame the stream has lost its place: close it.
Neither side is safe for two concurrent writers (or readers) on the same
stream; serialise them.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Final

from project_o.errors import ConnectionClosed
from project_o.wire.framing import (
    DEFAULT_MAX_FRAME_SIZE,
    PREFIX_SIZE,
    check_frame_size,
    check_head,
    decode_payload,
    encode_frame,
    finish_unpacker,
    frame_cap,
    new_unpacker,
    parse_prefix,
)
from project_o.wire.limits import COUNT_FROM, HEAD_SIZE, FrameLimits
from project_o.wire.messages import Message

__all__ = [
    "read_frame_async",
    "read_message",
    "read_message_async",
    "write_message",
    "write_message_async",
]

# Most bytes asked of one recv(). Large enough that a 64 MiB frame takes a
# few hundred calls; small enough that a lying length prefix costs us at
# most this much beyond what actually arrived.
_RECV_CHUNK: Final = 256 * 1024


def read_message(
    sock: socket.socket, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE, *,
    limits: FrameLimits | None = None,
) -> Message:
    """Block until one whole frame arrives on ``sock``; return its Message.

    Raises ConnectionClosed, FrameTooLarge (checked before the payload is
    read; with ``limits``, the type's cap before the body is read),
    FrameDecodeError, UnknownMessageType or UnexpectedMessageType;
    TimeoutError if the socket has a timeout and it expires.
    """
    max_frame_size = frame_cap(max_frame_size, limits)
    prefix = _recv_exactly(sock, PREFIX_SIZE, in_frame=False)
    size = parse_prefix(prefix)
    check_frame_size(size, max_frame_size)
    payload = _recv_exactly(sock, min(size, HEAD_SIZE), in_frame=True)
    if limits is not None:
        check_head(payload, size, limits)
    payload += _recv_exactly(sock, size - len(payload), in_frame=True)
    return decode_payload(payload, max_frame_size, limits=limits)


def write_message(
    sock: socket.socket, message: Message, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE
) -> None:
    """Send ``message`` as one frame on ``sock`` (``sendall``).

    Raises InvalidArgument or FrameTooLarge before sending anything if the
    message cannot be framed, ConnectionClosed(clean=False) if the peer is gone.
    """
    frame = encode_frame(message, max_frame_size)
    try:
        sock.sendall(frame)
    except ConnectionError as exc:
        raise ConnectionClosed(clean=False, detail=f"sending a frame failed: {exc}") from exc


async def read_message_async(
    reader: asyncio.StreamReader, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE, *,
    limits: FrameLimits | None = None,
) -> Message:
    """Wait for one whole frame on ``reader``; return its Message.

    Same errors as :func:`read_message` (without the socket timeout; use
    ``asyncio.timeout`` around the call).
    """
    message, _ = await read_frame_async(reader, max_frame_size, limits=limits)
    return message


async def read_frame_async(
    reader: asyncio.StreamReader, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE, *,
    limits: FrameLimits | None = None,
) -> tuple[Message, int]:
    """As :func:`read_message_async`, also returning the payload's size in bytes.

    With ``limits``, a payload of :data:`~project_o.wire.limits.COUNT_FROM`
    bytes or more is decoded chunk by chunk as it arrives.
    """
    max_frame_size = frame_cap(max_frame_size, limits)
    prefix = await _read_exactly(reader, PREFIX_SIZE, in_frame=False)
    size = parse_prefix(prefix)
    check_frame_size(size, max_frame_size)
    if limits is None:
        payload = await _read_exactly(reader, size, in_frame=True)
        return decode_payload(payload, max_frame_size), size
    head = await _read_exactly(reader, min(size, HEAD_SIZE), in_frame=True)
    check_head(head, size, limits)
    if size < COUNT_FROM:
        payload = head + await _read_exactly(reader, size - len(head), in_frame=True)
        return decode_payload(payload, limits=limits), size
    message = await _read_streamed(reader, head, size, limits)
    limits.check(message.type, size)
    return message, size


async def _read_streamed(
    reader: asyncio.StreamReader, head: bytes, size: int, limits: FrameLimits
) -> Message:
    unpacker = new_unpacker(size, limits.max_objects)
    unpacker.feed(head)
    fed = len(head)
    while True:
        message = finish_unpacker(unpacker, size, fed, limits.max_objects)
        if message is not None:
            return message
        try:
            chunk = await reader.read(min(size - fed, _RECV_CHUNK))
        except ConnectionError as exc:
            raise ConnectionClosed(clean=False, detail=f"receiving failed: {exc}") from exc
        if not chunk:
            raise _eof(fed, size, in_frame=True)
        unpacker.feed(chunk)
        fed += len(chunk)


async def write_message_async(
    writer: asyncio.StreamWriter, message: Message, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE
) -> None:
    """Write ``message`` as one frame and wait for the buffer to drain.

    Same errors as :func:`write_message`.
    """
    frame = encode_frame(message, max_frame_size)
    try:
        writer.write(frame)
        await writer.drain()
    except ConnectionError as exc:
        raise ConnectionClosed(clean=False, detail=f"sending a frame failed: {exc}") from exc


def _recv_exactly(sock: socket.socket, count: int, *, in_frame: bool) -> bytearray:
    buffer = bytearray()
    while len(buffer) < count:
        try:
            chunk = sock.recv(min(count - len(buffer), _RECV_CHUNK))
        except ConnectionError as exc:
            raise ConnectionClosed(clean=False, detail=f"receiving failed: {exc}") from exc
        if not chunk:
            raise _eof(len(buffer), count, in_frame=in_frame)
        buffer += chunk
    return buffer


async def _read_exactly(reader: asyncio.StreamReader, count: int, *, in_frame: bool) -> bytes:
    try:
        return await reader.readexactly(count)
    except asyncio.IncompleteReadError as exc:
        raise _eof(len(exc.partial), count, in_frame=in_frame) from exc
    except ConnectionError as exc:
        raise ConnectionClosed(clean=False, detail=f"receiving failed: {exc}") from exc


def _eof(received: int, expected: int, *, in_frame: bool) -> ConnectionClosed:
    if not in_frame and received == 0:
        return ConnectionClosed(clean=True)
    part = "payload" if in_frame else "length prefix"
    return ConnectionClosed(clean=False, detail=f"got {received} of {expected} bytes of the {part}")
