"""Sending a descriptor with a frame over an asyncio stream (``SCM_RIGHTS``).

::

    writer's buffer ── drained to empty ──► sendmsg(length prefix, [fd]) ──► rest of the frame
                                                 the descriptor rides on the frame's first
                                                 bytes, so it arrives with the frame that
                                                 announces it (runtime.channel.take_fd)

What the supervisor hands an instance without a path: the sealed copy of
a checkpoint (``vault/sealed.py``). Only for ``AF_UNIX`` sockets.
"""

from __future__ import annotations

import asyncio
import os
import socket

from project_o.wire.framing import DEFAULT_MAX_FRAME_SIZE, PREFIX_SIZE, encode_frame
from project_o.wire.messages import Message

__all__ = ["write_message_with_fd_async"]


async def write_message_with_fd_async(
    writer: asyncio.StreamWriter, message: Message, fd: int,
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
) -> None:
    """Write ``message`` with ``fd`` attached (the caller keeps and closes its own ``fd``).

    Like ``write_message_async``, the caller serialises writers. Raises what
    encoding raises (nothing sent) or OSError / ConnectionError.
    """
    frame = encode_frame(message, max_frame_size)
    await _flushed(writer)
    sent = await _send_fd(writer, frame[:PREFIX_SIZE], fd)
    writer.write(frame[sent:])
    await writer.drain()


async def _flushed(writer: asyncio.StreamWriter) -> None:
    """Return once the transport's write buffer is empty (not merely below its high mark)."""
    transport = writer.transport
    if not transport.get_write_buffer_size():
        return
    low, high = transport.get_write_buffer_limits()
    transport.set_write_buffer_limits(high=0, low=0)  # drain() now waits for empty
    try:
        await writer.drain()
    finally:
        transport.set_write_buffer_limits(high=high, low=low)


async def _send_fd(writer: asyncio.StreamWriter, head: bytes, fd: int) -> int:
    """``sendmsg`` ``head`` with ``fd`` on the writer's socket; the bytes it took (at least 1)."""
    raw = writer.get_extra_info("socket")
    if raw is None:
        raise ConnectionResetError("the stream has no socket (closed)")
    # A socket object of our own on a duplicate descriptor: asyncio's wrapper
    # does not offer sendmsg, and waiting on the duplicate leaves the
    # transport's own registration with the event loop alone.
    sock = socket.socket(fileno=os.dup(raw.fileno()))
    try:
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        while True:
            try:
                return socket.send_fds(sock, [head], [fd])
            except BlockingIOError:  # the peer's receive buffer is full: wait for room
                writable: asyncio.Future[None] = loop.create_future()
                loop.add_writer(sock.fileno(), writable.set_result, None)
                try:
                    await writable
                finally:
                    loop.remove_writer(sock.fileno())
    finally:
        sock.close()
