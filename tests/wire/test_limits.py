"""Frame caps per message type, the object budget and nesting depth, on real sockets."""

from __future__ import annotations

import asyncio
import socket
import struct

import msgpack
import pytest

from project_o.errors import (
    FrameDecodeError,
    FrameTooLarge,
    InvalidArgument,
    UnexpectedMessageType,
    UnknownMessageType,
)
from project_o.wire import FrameDecoder, FrameLimits, Message, MessageType, encode_frame
from project_o.wire.framing import decode_payload
from project_o.wire.limits import COUNT_FROM, peek_type
from project_o.wire.transport import read_frame_async, read_message

LIMITS = FrameLimits({MessageType.HEARTBEAT: 1024, MessageType.CHECKPOINT: 8 << 20},
                     max_objects=100_000)


def _frame(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


def _payload(kind: str, data_bytes: bytes) -> bytes:
    """A frame map whose data holds ``data_bytes`` (already MessagePack) under "x"."""
    head = msgpack.packb({"type": kind, "timestamp": 1.0})[1:]  # drop the fixmap byte
    return (b"\x84" + head + msgpack.packb("data") + b"\x81" + msgpack.packb("x")
            + data_bytes + msgpack.packb("metadata") + b"\x80")


def _empty_maps(count: int, per_array: int = 10_000) -> bytes:
    """``count`` empty maps, in arrays of ``per_array`` (each under any per-array limit)."""
    arrays = count // per_array
    inner = b"\xdd" + struct.pack(">I", per_array) + b"\x80" * per_array
    return b"\xdd" + struct.pack(">I", arrays) + inner * arrays


def test_the_type_is_read_from_the_head_encode_frame_writes() -> None:
    frame = encode_frame(Message("checkpoint", {"state": {}}))
    assert peek_type(frame[4:]) == "checkpoint"
    assert peek_type(msgpack.packb({"timestamp": 1.0, "type": "hello"})) is None


def test_a_large_frame_of_a_small_type_is_refused_before_its_body_is_read() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        payload = _payload("heartbeat", b"\xc0")
        # The prefix announces 1 MiB; only the head is ever sent.
        theirs.sendall(struct.pack(">I", 1 << 20) + payload[:40])
        with pytest.raises(FrameTooLarge) as caught:
            read_message(ours, limits=LIMITS)
        assert caught.value.message_type == "heartbeat" and caught.value.limit == 1024


def test_a_type_the_peer_may_not_send_is_refused_small_or_large() -> None:
    small = encode_frame(Message("restore", {"checkpoint": None}))
    with pytest.raises(UnexpectedMessageType, match="restore"):
        FrameDecoder(limits=LIMITS).feed(small)
    large = struct.pack(">I", 4 << 20) + _payload("forked", b"\xc0")[:40]
    with pytest.raises(UnexpectedMessageType, match="forked"):
        FrameDecoder(limits=LIMITS).feed(large)
    with pytest.raises(UnknownMessageType):
        FrameDecoder(limits=LIMITS).feed(struct.pack(">I", 4 << 20) + _payload("bogus", b"")[:40])


def test_a_large_frame_must_start_with_its_type() -> None:
    payload = msgpack.packb({"timestamp": 1.0, "type": "checkpoint", "data": {"x": "a" * 5000},
                             "metadata": {}})
    with pytest.raises(FrameDecodeError, match="must start with its type"):
        FrameDecoder(limits=LIMITS).feed(_frame(payload))


def test_a_frame_of_empty_maps_stops_at_the_object_budget() -> None:
    payload = _payload("checkpoint", _empty_maps(1_000_000))
    with pytest.raises(FrameDecodeError, match="max_objects"):
        decode_payload(payload, limits=LIMITS)
    # the same with an array too long for the budget: refused by its header alone
    with pytest.raises(FrameDecodeError):
        decode_payload(_payload("checkpoint", b"\xdd" + struct.pack(">I", 10**6) + b"\xc0" * 10),
                       limits=LIMITS)


def test_a_legitimate_large_frame_decodes_streamed_and_whole_alike() -> None:
    state = {"memories": [{"id": i, "vector": bytes(64), "text": f"fact {i}"}
                          for i in range(5000)]}
    frame = encode_frame(Message("checkpoint", {"state": state, "last_sequence": 7}))
    assert len(frame) > COUNT_FROM
    [whole] = FrameDecoder(limits=LIMITS).feed(frame)
    streamed, size = asyncio.run(_read_async(frame, chunk=1000))
    assert whole.data == streamed.data == {"state": state, "last_sequence": 7}
    assert size == len(frame) - 4


def test_streamed_decoding_refuses_what_whole_decoding_refuses() -> None:
    bomb = _frame(_payload("checkpoint", _empty_maps(2_000_000)))
    with pytest.raises(FrameDecodeError, match="max_objects"):
        asyncio.run(_read_async(bomb, chunk=65536))
    trailing = _frame(_payload("checkpoint", b"\xc4\xff" + bytes(255) * 300)[:-1] + b"\x80\xc0")
    with pytest.raises(FrameDecodeError):
        asyncio.run(_read_async(trailing, chunk=4096))


def test_nesting_deeper_than_msgpacks_stack_is_refused_not_a_crash() -> None:
    # msgpack's C unpacker has a fixed stack of 1024 containers: the frame map and
    # data take two, so 1022 arrays inside data decode and one more does not.
    for depth, ok in ((1022, True), (1023, False), (100_000, False)):
        payload = _payload("checkpoint", b"\x91" * depth + b"\xc0")
        if ok:
            assert decode_payload(payload, limits=LIMITS).type == "checkpoint"
        else:
            with pytest.raises(FrameDecodeError, match="StackError"):
                decode_payload(payload, limits=LIMITS)


def test_limits_are_checked_when_made() -> None:
    with pytest.raises(InvalidArgument):
        FrameLimits({})
    with pytest.raises(InvalidArgument):
        FrameLimits({MessageType.HELLO: 0})
    with pytest.raises(InvalidArgument):
        FrameLimits({MessageType.HELLO: 10}, max_objects=0)
    assert LIMITS.max_frame_size == 8 << 20 and LIMITS.read_whole_up_to == 1024


async def _read_async(frame: bytes, *, chunk: int) -> tuple[Message, int]:
    ours, theirs = socket.socketpair()
    reader, writer = await asyncio.open_unix_connection(sock=ours)

    def send() -> None:
        with theirs:
            for start in range(0, len(frame), chunk):
                theirs.sendall(frame[start:start + chunk])

    sender = asyncio.get_running_loop().run_in_executor(None, send)
    try:
        return await read_frame_async(reader, limits=LIMITS)
    finally:
        writer.close()
        await asyncio.gather(sender, return_exceptions=True)


def test_nested_deeper_than_counts_containers_only_and_never_recurses() -> None:
    from project_o.wire.packable import nested_deeper_than

    value: object = 1
    for _ in range(100_000):  # far past Python's recursion limit
        value = [value]
    assert nested_deeper_than(value, 99_999) and not nested_deeper_than(value, 100_000)
    assert not nested_deeper_than({"a": [1, 2, {"b": "c"}], "d": list(range(1000))}, 3)
    assert nested_deeper_than({"a": [1, 2, {"b": ["c"]}]}, 3)
    assert not nested_deeper_than("text", 0)
