"""Packed values: checked and packed once, spliced into a frame as the same bytes."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from project_o.errors import InvalidArgument
from project_o.wire import FrameDecoder, Message, Packed, encode_frame

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False)
    | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children,
                                                                      max_size=4),
    max_leaves=20,
)


@given(JSON, st.integers(0, 20))
def test_a_packed_value_makes_the_same_frame_as_the_value(value: Any, extra: int) -> None:
    data = {f"k{n}": n for n in range(extra)}
    plain = Message("request", {**data, "input": value}, timestamp=1.5)
    packed = Message("request", {**data, "input": Packed.of(value)}, timestamp=1.5)
    frame = encode_frame(packed)
    assert frame == encode_frame(plain)
    (decoded,) = FrameDecoder().feed(frame)
    assert decoded.data["input"] == value


def test_the_other_values_are_still_checked() -> None:
    message = Message("request", {"input": Packed.of(1), "bad": {1, 2}}, timestamp=1.0)
    with pytest.raises(InvalidArgument, match="set is not a MessagePack type"):
        encode_frame(message)
