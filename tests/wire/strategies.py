"""Hypothesis strategies and helpers shared by the wire tests."""

from __future__ import annotations

import struct
from typing import Any

import msgpack
from hypothesis import strategies as st

from project_o.errors import (
    ConnectionClosed,
    FrameDecodeError,
    FrameTooLarge,
    UnknownMessageType,
)
from project_o.wire import Message, MessageType, encode_frame

#: Every error the spec allows a reader to raise on arbitrary input.
PROTOCOL_ERRORS = (FrameTooLarge, FrameDecodeError, UnknownMessageType, ConnectionClosed)

# Map keys the decoder accepts (see project_o.wire.packable).
keys = st.one_of(st.text(max_size=10), st.binary(max_size=6))

leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    # NaN is packable but not equal to itself, which would blur the
    # round-trip assertion; infinities are kept.
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.binary(max_size=20),
    st.builds(
        msgpack.Timestamp,
        seconds=st.integers(min_value=-(2**40), max_value=2**40),
        nanoseconds=st.integers(min_value=0, max_value=999_999_999),
    ),
)

#: Values that may appear inside data/metadata, lists and maps nested.
values = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=4)
    ),
    max_leaves=20,
)

maps = st.dictionaries(keys, values, max_size=5)

timestamps = st.floats(min_value=0, max_value=4e9, allow_nan=False, allow_infinity=False)

messages = st.builds(
    Message,
    type=st.sampled_from(MessageType),
    data=maps,
    metadata=maps,
    timestamp=timestamps,
)


def frame_of(payload: bytes) -> bytes:
    """A length prefix for ``payload``, then the payload."""
    return struct.pack(">I", len(payload)) + payload


def split(stream: bytes, sizes: list[int]) -> list[bytes]:
    """Cut ``stream`` into chunks of the given sizes (cycled), the last one shorter."""
    chunks, offset, index = [], 0, 0
    while offset < len(stream):
        size = sizes[index % len(sizes)] if sizes else len(stream)
        chunks.append(stream[offset : offset + size])
        offset += size
        index += 1
    return chunks


chunk_sizes = st.lists(st.integers(min_value=1, max_value=64), min_size=1, max_size=8)


def _mutate(frame: bytes, edits: list[tuple[int, int]]) -> bytes:
    data = bytearray(frame)
    for position, byte in edits:
        data[position % len(data)] = byte
    return bytes(data)


_byte_edits = st.lists(
    st.tuples(st.integers(min_value=0, max_value=10_000), st.integers(0, 255)), max_size=4
)

# Top-level maps shaped almost like a frame: real keys, odd keys, odd values.
_frame_like_maps = st.dictionaries(
    st.sampled_from(["type", "timestamp", "data", "metadata", "extra"]),
    st.one_of(values, st.sampled_from([t.value for t in MessageType]), st.just("nonsense")),
    max_size=5,
).map(lambda fields: frame_of(msgpack.packb(fields)))

#: Byte streams that are mostly not valid frames, in several flavours.
garbage = st.one_of(
    st.binary(max_size=300),
    st.lists(st.binary(max_size=40), max_size=5).map(lambda ps: b"".join(map(frame_of, ps))),
    st.builds(_mutate, messages.map(encode_frame), _byte_edits),
    st.lists(_frame_like_maps, min_size=1, max_size=4).map(b"".join),
    st.builds(lambda a, b: a + b, messages.map(encode_frame), st.binary(max_size=40)),
)


def frame_fields(**overrides: Any) -> dict[str, Any]:
    """A valid payload map, with fields replaced (or removed if given MISSING)."""
    fields: dict[str, Any] = {
        "type": "request",
        "timestamp": 1_700_000_000.5,
        "data": {"id": "r1", "input": [1, 2, 3]},
        "metadata": {},
    }
    for name, value in overrides.items():
        if value is MISSING:
            del fields[name]
        else:
            fields[name] = value
    return fields


MISSING = object()
