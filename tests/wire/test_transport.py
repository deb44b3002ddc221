"""read_message / write_message over real socketpairs."""

from __future__ import annotations

import socket
import struct
import threading
import tracemalloc
from collections.abc import Iterator

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from project_o.errors import ConnectionClosed, FrameDecodeError, FrameTooLarge, UnknownMessageType
from project_o.wire import (
    DEFAULT_MAX_FRAME_SIZE,
    Message,
    encode_frame,
    read_message,
    write_message,
)

from .strategies import PROTOCOL_ERRORS, frame_fields, frame_of, garbage, messages

# A guard, not a measurement: a read that would block forever fails the
# test with TimeoutError instead of hanging the suite.
GUARD_TIMEOUT_S = 10.0


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    writer, reader = socket.socketpair()
    reader.settimeout(GUARD_TIMEOUT_S)
    writer.settimeout(GUARD_TIMEOUT_S)
    yield writer, reader
    writer.close()
    reader.close()


def _send_in_thread(sock: socket.socket, sent: list[Message]) -> threading.Thread:
    # A thread, so frames larger than the socket buffer cannot deadlock us.
    def run() -> None:
        for message in sent:
            write_message(sock, message)
        sock.shutdown(socket.SHUT_WR)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@settings(max_examples=60, deadline=None)
@given(st.lists(messages, max_size=5))
def test_round_trip_over_a_socketpair(sent: list[Message]) -> None:
    writer, reader = socket.socketpair()
    with writer, reader:
        reader.settimeout(GUARD_TIMEOUT_S)
        thread = _send_in_thread(writer, sent)
        received = [read_message(reader) for _ in sent]
        with pytest.raises(ConnectionClosed) as info:
            read_message(reader)
        thread.join()
    assert received == sent
    assert info.value.clean is True


def test_a_frame_larger_than_the_socket_buffer(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    writer, reader = pair
    big = Message("checkpoint", {"id": "c1", "state": {"blob": b"\x07" * (3 * 1024 * 1024)}})
    thread = _send_in_thread(writer, [big])
    assert read_message(reader) == big
    thread.join()


def test_oversized_prefix_is_refused_without_reading_the_payload(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    writer, reader = pair
    # 2 GiB announced, 10 bytes sent, writer left open: reading the payload
    # would block until the guard timeout.
    writer.sendall(struct.pack(">I", 2**31) + b"0123456789")
    with pytest.raises(FrameTooLarge) as info:
        read_message(reader)
    assert (info.value.size, info.value.limit) == (2**31, DEFAULT_MAX_FRAME_SIZE)
    assert reader.recv(100) == b"0123456789"  # the payload was left alone


def test_a_lying_prefix_costs_what_arrived_not_what_it_announced(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    writer, reader = pair
    writer.sendall(struct.pack(">I", 2**31) + b"0123456789")
    writer.shutdown(socket.SHUT_WR)
    tracemalloc.start()
    try:
        with pytest.raises(ConnectionClosed) as info:
            read_message(reader, max_frame_size=2**32 - 1)  # a limit that lets 2 GiB through
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.value.clean is False
    assert peak < 4 * 1024 * 1024


def test_configured_limit_applies(pair: tuple[socket.socket, socket.socket]) -> None:
    writer, reader = pair
    write_message(writer, Message("response", {"output": "x" * 500}))
    with pytest.raises(FrameTooLarge) as info:
        read_message(reader, max_frame_size=100)
    assert info.value.limit == 100


def test_clean_eof_between_frames(pair: tuple[socket.socket, socket.socket]) -> None:
    writer, reader = pair
    message = Message("shutdown", {})
    write_message(writer, message)
    writer.shutdown(socket.SHUT_WR)
    assert read_message(reader) == message
    with pytest.raises(ConnectionClosed) as info:
        read_message(reader)
    assert info.value.clean is True


@pytest.mark.parametrize("cut", [1, 3, 4, 9], ids=lambda c: f"after {c} bytes")
def test_eof_inside_a_frame_is_unclean(pair: tuple[socket.socket, socket.socket], cut: int) -> None:
    writer, reader = pair
    writer.sendall(encode_frame(Message("response", {"id": "r1", "output": "done"}))[:cut])
    writer.shutdown(socket.SHUT_WR)
    with pytest.raises(ConnectionClosed) as info:
        read_message(reader)
    assert info.value.clean is False


def test_peer_gone_while_unread_data_is_a_reset(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    writer, reader = pair
    # The peer closes with our bytes unread in its buffer: Linux reports
    # ECONNRESET, which must surface as an unclean close.
    reader.sendall(b"unread by the peer")
    writer.close()
    with pytest.raises(ConnectionClosed) as info:
        read_message(reader)
    assert info.value.clean is False
    assert isinstance(info.value.__cause__, ConnectionResetError)


def test_writing_to_a_closed_peer(pair: tuple[socket.socket, socket.socket]) -> None:
    writer, reader = pair
    reader.close()
    with pytest.raises(ConnectionClosed) as info:
        write_message(writer, Message("request", {"id": "r1"}))
    assert info.value.clean is False
    assert isinstance(info.value.__cause__, ConnectionError)


def test_unknown_type_then_the_stream_goes_on(pair: tuple[socket.socket, socket.socket]) -> None:
    writer, reader = pair
    after = Message("hello", {"pid": 1})
    writer.sendall(frame_of(msgpack.packb(frame_fields(type="teleport"))) + encode_frame(after))
    with pytest.raises(UnknownMessageType):
        read_message(reader)
    # The bad frame was consumed whole, so framing is still in sync.
    assert read_message(reader) == after


def test_decode_error_consumes_exactly_one_frame(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    writer, reader = pair
    after = Message("hello", {"pid": 1})
    writer.sendall(frame_of(b"\xc1\xc1\xc1") + encode_frame(after))
    with pytest.raises(FrameDecodeError):
        read_message(reader)
    assert read_message(reader) == after


@settings(max_examples=150, deadline=None)
@given(garbage)
def test_garbage_on_a_socket_yields_messages_or_protocol_errors(stream: bytes) -> None:
    writer, reader = socket.socketpair()
    with writer, reader:
        reader.settimeout(GUARD_TIMEOUT_S)  # TimeoutError would fail the test
        writer.sendall(stream)  # small enough for the socket buffer
        writer.shutdown(socket.SHUT_WR)
        for _ in range(len(stream) // 4 + 2):  # a frame takes at least 4 bytes
            try:
                assert isinstance(read_message(reader, max_frame_size=4096), Message)
            except (FrameDecodeError, UnknownMessageType):
                continue  # the bad frame was consumed whole; read on
            except PROTOCOL_ERRORS:
                return  # too large (stream out of sync) or closed: done
        pytest.fail("the reader never reached the end of a finite stream")
