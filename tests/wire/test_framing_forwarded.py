"""A forwarded frame: data values packed once elsewhere, spliced into a frame as is."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from project_o.errors import FrameTooLarge
from project_o.wire import Message, MessageType, decode_payload, encode_frame
from project_o.wire.framing import PREFIX_SIZE, encode_forwarded_frame, parse_prefix

values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats()
    | st.text() | st.binary(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(sequence=st.integers(0, 2**63), operation=st.text(min_size=1), data=values)
def test_a_forwarded_frame_is_byte_for_byte_the_encoded_message(
    sequence: int, operation: str, data: Any
) -> None:
    frame = encode_forwarded_frame(MessageType.WAL_ENTRY, {
        "sequence": msgpack.packb(sequence), "operation": msgpack.packb(operation),
        "data": msgpack.packb(data, use_bin_type=True)})
    assert parse_prefix(frame[:PREFIX_SIZE]) == len(frame) - PREFIX_SIZE
    message = decode_payload(frame[PREFIX_SIZE:])
    expected = Message(MessageType.WAL_ENTRY,
                       {"sequence": sequence, "operation": operation, "data": data},
                       timestamp=message.timestamp)
    assert frame == encode_frame(expected)


def test_a_forwarded_frame_over_the_limit_is_refused() -> None:
    with pytest.raises(FrameTooLarge):
        encode_forwarded_frame(MessageType.WAL_ENTRY, {"data": msgpack.packb(b"x" * 200)},
                               max_frame_size=100)
