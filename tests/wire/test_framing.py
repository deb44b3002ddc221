"""encode_frame / decode_payload: the frame layout and every malformed case."""

from __future__ import annotations

import math
import struct
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings

from project_o.errors import (
    FrameDecodeError,
    FrameTooLarge,
    InvalidArgument,
    ProtocolError,
    UnknownMessageType,
)
from project_o.wire import (
    DEFAULT_MAX_FRAME_SIZE,
    FrameDecoder,
    Message,
    MessageType,
    decode_payload,
    encode_frame,
    read_message,
)

from .strategies import MISSING, frame_fields, messages, values


def test_default_limit_is_64_mib() -> None:
    assert DEFAULT_MAX_FRAME_SIZE == 64 * 1024 * 1024


def test_frame_layout_is_big_endian_length_then_the_four_key_map() -> None:
    message = Message("wal_ack", {"id": "w1", "sequence": 7}, {"trace": "t"}, 1_700_000_000.25)
    frame = encode_frame(message)
    (length,) = struct.unpack(">I", frame[:4])
    assert length == len(frame) - 4
    fields = msgpack.unpackb(frame[4:])
    assert fields == {
        "type": "wal_ack",
        "timestamp": 1_700_000_000.25,
        "data": {"id": "w1", "sequence": 7},
        "metadata": {"trace": "t"},
    }
    assert type(fields["type"]) is str
    assert type(fields["timestamp"]) is float


@settings(max_examples=100, deadline=None)
@given(messages)
def test_decode_payload_inverts_encode_frame(message: Message) -> None:
    frame = encode_frame(message)
    decoded = decode_payload(frame[4:])
    assert decoded == message
    # Byte-exact too: no value changed type on the way (e.g. bool vs int).
    assert encode_frame(decoded) == frame


def test_encode_refuses_a_frame_over_the_limit() -> None:
    message = Message("response", {"output": b"x" * 2000})
    with pytest.raises(FrameTooLarge) as info:
        encode_frame(message, max_frame_size=1000)
    assert info.value.size > 1000
    assert info.value.limit == 1000


def test_limit_is_on_the_payload_and_inclusive() -> None:
    frame = encode_frame(Message("heartbeat", {"beat": 1}))
    payload_size = len(frame) - 4
    assert encode_frame(Message("heartbeat", {"beat": 1}, timestamp=0), payload_size) is not None
    assert len(FrameDecoder(payload_size).feed(frame)) == 1
    with pytest.raises(FrameTooLarge):
        FrameDecoder(payload_size - 1).feed(frame)
    with pytest.raises(FrameTooLarge):
        decode_payload(frame[4:], payload_size - 1)


@pytest.mark.parametrize("bad", [0, -1, 2**32, 1.5, True, "64"])
def test_max_frame_size_is_validated_everywhere(bad: Any) -> None:
    message = Message("hello", {})
    with pytest.raises(InvalidArgument, match="max_frame_size"):
        encode_frame(message, bad)
    with pytest.raises(InvalidArgument, match="max_frame_size"):
        decode_payload(encode_frame(message)[4:], bad)
    with pytest.raises(InvalidArgument, match="max_frame_size"):
        FrameDecoder(bad)
    with pytest.raises(InvalidArgument, match="max_frame_size"):
        read_message(None, bad)  # type: ignore[arg-type]  # checked before the socket


def _packed(fields: Any) -> bytes:
    return msgpack.packb(fields)  # type: ignore[no-any-return]


def _with_raw_data(raw: bytes) -> bytes:
    """A payload map whose "data" value is the given raw MessagePack bytes."""
    head = b"\x84" + b"".join(_packed(part) for part in ("type", "request", "timestamp", 1.0))
    return head + _packed("metadata") + _packed({}) + _packed("data") + raw


MALFORMED: dict[str, bytes] = {
    "empty payload": b"",
    "not msgpack": b"\xc1",
    "truncated map": _packed(frame_fields())[:-1],
    "trailing bytes": _packed(frame_fields()) + b"\xc0",
    "two maps": _packed(frame_fields()) * 2,
    "array, not map": _packed(["request", 1.0, {}, {}]),
    "int, not map": _packed(7),
    "str, not map": _packed("request"),
    "missing type": _packed(frame_fields(type=MISSING)),
    "missing timestamp": _packed(frame_fields(timestamp=MISSING)),
    "missing data": _packed(frame_fields(data=MISSING)),
    "missing metadata": _packed(frame_fields(metadata=MISSING)),
    "extra key": _packed({**frame_fields(), "extra": 1}),
    "bytes key for type": _packed({**frame_fields(type=MISSING), b"type": "request"}),
    "int key at top": _packed({**frame_fields(), 1: 1}),
    "type is int": _packed(frame_fields(type=1)),
    "type is bytes": _packed(frame_fields(type=b"request")),
    "type is nil": _packed(frame_fields(type=None)),
    "timestamp is int": _packed(frame_fields(timestamp=1_700_000_000)),
    "timestamp is str": _packed(frame_fields(timestamp="1700000000")),
    "timestamp is nil": _packed(frame_fields(timestamp=None)),
    "timestamp is nan": _packed(frame_fields(timestamp=math.nan)),
    "timestamp is inf": _packed(frame_fields(timestamp=math.inf)),
    "data is array": _packed(frame_fields(data=[1, 2])),
    "data is nil": _packed(frame_fields(data=None)),
    "data is str": _packed(frame_fields(data="x")),
    "metadata is array": _packed(frame_fields(metadata=[])),
    "metadata is int": _packed(frame_fields(metadata=0)),
    "int key inside data": _packed(frame_fields(data={1: "one"})),
    "extension inside data": _packed(frame_fields(data={"x": msgpack.ExtType(5, b"ab")})),
    "bad timestamp extension": _with_raw_data(b"\xd5\xff\x00\x00"),  # ext -1, 2 bytes
    "invalid utf-8": _with_raw_data(b"\x81\xa1k\xa2\xff\xfe"),
    "nesting beyond the unpacker": _with_raw_data(b"\x91" * 5000 + b"\xc0"),
    "array length lies": _with_raw_data(b"\x81\xa1k\xdd\xff\xff\xff\xff"),
    "map length lies": _with_raw_data(b"\xdf\xff\xff\xff\xff"),
    "str length lies": _with_raw_data(b"\xdb\x7f\xff\xff\xff"),
}


def test_malformed_cases_are_well_formed_apart_from_the_flaw() -> None:
    """The byte surgery above starts from a map that does decode."""
    assert decode_payload(_packed(frame_fields())).type is MessageType.REQUEST
    assert decode_payload(_with_raw_data(_packed({"k": [1]}))).data == {"k": [1]}


@pytest.mark.parametrize("payload", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_payload_raises_frame_decode_error(payload: bytes) -> None:
    with pytest.raises(FrameDecodeError) as info:
        decode_payload(payload)
    assert not isinstance(info.value, UnknownMessageType)
    assert "drop the connection" in str(info.value)


def test_decode_error_names_the_field_and_what_was_expected() -> None:
    with pytest.raises(FrameDecodeError, match="'timestamp' must be a float.*got int"):
        decode_payload(_packed(frame_fields(timestamp=3)))
    with pytest.raises(FrameDecodeError, match=r"missing \['data'\], unexpected \['extra'\]"):
        decode_payload(_packed({**frame_fields(data=MISSING), "extra": 1}))


@pytest.mark.parametrize("kind", ["nonsense", "", "HELLO", "hello "])
def test_unknown_type_raises_unknown_message_type(kind: str) -> None:
    with pytest.raises(UnknownMessageType) as info:
        decode_payload(_packed(frame_fields(type=kind)))
    assert info.value.message_type == kind


def test_unknown_type_is_checked_after_the_shape() -> None:
    """A frame that is both unknown-typed and malformed is malformed first."""
    with pytest.raises(FrameDecodeError) as info:
        decode_payload(_packed(frame_fields(type="nonsense", data=[])))
    assert not isinstance(info.value, UnknownMessageType)


@settings(max_examples=150, deadline=None)
@given(values)
def test_any_msgpack_value_decodes_or_raises_a_protocol_error(value: object) -> None:
    try:
        message = decode_payload(_packed(value))
    except (FrameDecodeError, UnknownMessageType):
        return
    assert isinstance(message, Message)


def test_protocol_errors_share_one_base() -> None:
    for cls in (FrameDecodeError, FrameTooLarge, UnknownMessageType):
        assert issubclass(cls, ProtocolError)
