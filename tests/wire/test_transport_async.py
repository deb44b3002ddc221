"""read_message_async / write_message_async over real asyncio streams."""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from collections.abc import Awaitable, Callable

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from project_o.errors import ConnectionClosed, FrameDecodeError, FrameTooLarge, UnknownMessageType
from project_o.wire import (
    Message,
    encode_frame,
    read_message,
    read_message_async,
    write_message,
    write_message_async,
)

from .strategies import PROTOCOL_ERRORS, frame_fields, frame_of, garbage, messages

# A guard, not a measurement: a read that would wait forever fails the
# test with TimeoutError instead of hanging the suite.
GUARD_TIMEOUT_S = 10.0

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


def run_with_pair(body: Callable[[Streams, Streams], Awaitable[None]]) -> None:
    """Run ``body(left, right)`` on the two ends of a fresh socketpair."""

    async def main() -> None:
        left_sock, right_sock = socket.socketpair()
        left = await asyncio.open_connection(sock=left_sock)
        right = await asyncio.open_connection(sock=right_sock)
        try:
            await asyncio.wait_for(body(left, right), GUARD_TIMEOUT_S)
        finally:
            for _, writer in (left, right):
                writer.close()

    asyncio.run(main())


@settings(max_examples=40, deadline=None)
@given(st.lists(messages, max_size=5))
def test_round_trip_over_asyncio_streams(sent: list[Message]) -> None:
    async def body(left: Streams, right: Streams) -> None:
        async def send() -> None:
            for message in sent:
                await write_message_async(left[1], message)
            left[1].write_eof()

        sender = asyncio.create_task(send())
        received = [await read_message_async(right[0]) for _ in sent]
        with pytest.raises(ConnectionClosed) as info:
            await read_message_async(right[0])
        await sender
        assert received == sent
        assert info.value.clean is True

    run_with_pair(body)


def test_large_frame_round_trip() -> None:
    big = Message("checkpoint", {"id": "c1", "state": {"blob": b"\x07" * (3 * 1024 * 1024)}})

    async def body(left: Streams, right: Streams) -> None:
        sender = asyncio.create_task(write_message_async(left[1], big))
        assert await read_message_async(right[0]) == big
        await sender

    run_with_pair(body)


def test_oversized_prefix_is_refused_without_reading_the_payload() -> None:
    async def body(left: Streams, right: Streams) -> None:
        # Writer left open: waiting for the 2 GiB would hit the guard timeout.
        left[1].write(struct.pack(">I", 2**31) + b"0123456789")
        await left[1].drain()
        with pytest.raises(FrameTooLarge) as info:
            await read_message_async(right[0])
        assert info.value.size == 2**31
        assert await right[0].readexactly(10) == b"0123456789"  # payload left alone

    run_with_pair(body)


def test_configured_limit_applies() -> None:
    async def body(left: Streams, right: Streams) -> None:
        await write_message_async(left[1], Message("response", {"output": "x" * 500}))
        with pytest.raises(FrameTooLarge) as info:
            await read_message_async(right[0], max_frame_size=100)
        assert info.value.limit == 100
        with pytest.raises(FrameTooLarge):
            await write_message_async(left[1], Message("response", {"output": "x" * 500}), 100)

    run_with_pair(body)


@pytest.mark.parametrize("cut", [1, 3, 4, 9], ids=lambda c: f"after {c} bytes")
def test_eof_inside_a_frame_is_unclean(cut: int) -> None:
    async def body(left: Streams, right: Streams) -> None:
        left[1].write(encode_frame(Message("response", {"id": "r1", "output": "done"}))[:cut])
        left[1].write_eof()
        with pytest.raises(ConnectionClosed) as info:
            await read_message_async(right[0])
        assert info.value.clean is False

    run_with_pair(body)


def test_unknown_type_raises() -> None:
    async def body(left: Streams, right: Streams) -> None:
        left[1].write(frame_of(msgpack.packb(frame_fields(type="teleport"))))
        with pytest.raises(UnknownMessageType):
            await read_message_async(right[0])

    run_with_pair(body)


def test_writing_to_a_closed_peer() -> None:
    async def body(left: Streams, right: Streams) -> None:
        right[1].close()
        await right[1].wait_closed()
        with pytest.raises(ConnectionClosed) as info:
            # The first write may land in the kernel before the close is
            # seen; the peer is gone by the second or third.
            for _ in range(3):
                await write_message_async(left[1], Message("request", {"id": "r1"}))
                await asyncio.sleep(0)
        assert info.value.clean is False

    run_with_pair(body)


def test_blocking_and_async_ends_interoperate() -> None:
    """A blocking writer feeds an async reader, and the other way round."""
    to_async = Message("request", {"id": "a", "input": [1, 2]})
    to_blocking = Message("response", {"id": "a", "output": {"ok": True}})
    blocking_sock, async_sock = socket.socketpair()
    blocking_sock.settimeout(GUARD_TIMEOUT_S)
    got: list[Message] = []

    def blocking_side() -> None:
        write_message(blocking_sock, to_async)
        got.append(read_message(blocking_sock))

    async def async_side() -> None:
        reader, writer = await asyncio.open_connection(sock=async_sock)
        assert await read_message_async(reader) == to_async
        await write_message_async(writer, to_blocking)
        writer.close()

    thread = threading.Thread(target=blocking_side, daemon=True)
    thread.start()
    asyncio.run(asyncio.wait_for(async_side(), GUARD_TIMEOUT_S))
    thread.join(GUARD_TIMEOUT_S)
    blocking_sock.close()
    assert got == [to_blocking]


@settings(max_examples=60, deadline=None)
@given(garbage)
def test_garbage_on_a_stream_yields_messages_or_protocol_errors(stream: bytes) -> None:
    async def body(left: Streams, right: Streams) -> None:
        left[1].write(stream)
        left[1].write_eof()
        for _ in range(len(stream) // 4 + 2):  # a frame takes at least 4 bytes
            try:
                message = await read_message_async(right[0], max_frame_size=4096)
            except (FrameDecodeError, UnknownMessageType):
                continue  # the bad frame was consumed whole; read on
            except PROTOCOL_ERRORS:
                return  # too large (stream out of sync) or closed: done
            assert isinstance(message, Message)
        pytest.fail("the reader never reached the end of a finite stream")

    run_with_pair(body)
