"""FrameDecoder: chunked round trips, garbage, limits, end of stream."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from project_o.errors import ConnectionClosed, FrameDecodeError, FrameTooLarge
from project_o.wire import DEFAULT_MAX_FRAME_SIZE, FrameDecoder, Message, encode_frame

from .strategies import PROTOCOL_ERRORS, chunk_sizes, garbage, messages, split


@settings(max_examples=100, deadline=None)
@given(st.lists(messages, max_size=6), chunk_sizes)
def test_round_trip_in_random_chunks(sent: list[Message], sizes: list[int]) -> None:
    stream = b"".join(encode_frame(message) for message in sent)
    decoder = FrameDecoder()
    received: list[Message] = []
    for chunk in split(stream, sizes):
        received.extend(decoder.feed(chunk))
    assert received == sent
    assert decoder.buffered == 0
    decoder.feed_eof()  # ended between frames: no error


def test_buffered_counts_the_unfinished_frame() -> None:
    frame = encode_frame(Message("heartbeat", {"beat": 3}))
    decoder = FrameDecoder()
    assert decoder.feed(frame[:2]) == []
    assert decoder.buffered == 2
    assert decoder.feed(frame[2:-1]) == []
    assert decoder.buffered == len(frame) - 1
    assert len(decoder.feed(frame[-1:] + frame[:5])) == 1
    assert decoder.buffered == 5


def test_many_frames_in_one_chunk_come_out_in_order() -> None:
    sent = [Message("heartbeat", {"beat": n}) for n in range(500)]
    decoder = FrameDecoder()
    assert decoder.feed(b"".join(map(encode_frame, sent))) == sent


def test_oversized_prefix_is_refused_from_the_prefix_alone() -> None:
    decoder = FrameDecoder()
    with pytest.raises(FrameTooLarge) as info:
        decoder.feed(struct.pack(">I", 2**31))  # not one payload byte yet
    assert info.value.size == 2**31
    assert info.value.limit == DEFAULT_MAX_FRAME_SIZE


def test_oversized_prefix_split_across_chunks() -> None:
    decoder = FrameDecoder(max_frame_size=100)
    assert decoder.feed(b"\x00\x00") == []
    with pytest.raises(FrameTooLarge):
        decoder.feed(b"\x00\x65")  # 101


def test_an_error_is_sticky() -> None:
    decoder = FrameDecoder()
    with pytest.raises(FrameDecodeError) as first:
        decoder.feed(struct.pack(">I", 1) + b"\xc1")
    valid = encode_frame(Message("hello", {}))
    with pytest.raises(FrameDecodeError) as again:
        decoder.feed(valid)
    assert again.value is first.value
    with pytest.raises(FrameDecodeError):
        decoder.feed_eof()


def test_feed_eof_between_frames_is_clean() -> None:
    decoder = FrameDecoder()
    [frame] = decoder.feed(encode_frame(Message("shutdown", {})))
    assert frame.type == "shutdown" and decoder.buffered == 0
    decoder.feed_eof()  # nothing half-read: no error


@pytest.mark.parametrize("cut", [1, 3, 4, 10])
def test_feed_eof_inside_a_frame_is_unclean(cut: int) -> None:
    decoder = FrameDecoder()
    decoder.feed(encode_frame(Message("response", {"id": "r1", "output": "x" * 20}))[:cut])
    with pytest.raises(ConnectionClosed) as info:
        decoder.feed_eof()
    assert info.value.clean is False


@settings(max_examples=300, deadline=None)
@given(garbage, chunk_sizes)
def test_garbage_yields_messages_or_one_protocol_error(stream: bytes, sizes: list[int]) -> None:
    decoder = FrameDecoder(max_frame_size=4096)
    try:
        for chunk in split(stream, sizes):
            for message in decoder.feed(chunk):
                assert isinstance(message, Message)
            assert decoder.buffered <= len(stream)
    except PROTOCOL_ERRORS as exc:
        # The decoder stays failed with the same error.
        with pytest.raises(type(exc)) as again:
            decoder.feed(b"")
        assert again.value is exc
        return
    try:
        decoder.feed_eof()
    except ConnectionClosed as exc:
        assert exc.clean is False
        assert decoder.buffered > 0
