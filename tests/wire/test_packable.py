"""ensure_packable: what we refuse to send, and that what we send is accepted."""

from __future__ import annotations

import enum
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from project_o.errors import InvalidArgument
from project_o.wire import MAX_NESTING_DEPTH, Message, decode_payload, encode_frame, ensure_packable
from project_o.wire.packable import find_unpackable

from .strategies import values


class Colour(enum.StrEnum):
    RED = "red"


def nested(depth: int) -> Any:
    """A list nested ``depth`` levels deep (depth 1 is ``[]``)."""
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        -(2**63),
        2**64 - 1,
        1.5,
        "text",
        b"bytes",
        bytearray(b"buf"),
        msgpack.Timestamp(1, 2),
        (1, "tuple"),
        {"k": [1, {b"bin-key": None}]},
        Colour.RED,
        nested(MAX_NESTING_DEPTH - 1),  # + the {"v": ...} map = the limit
    ],
    ids=repr,
)
def test_accepts_the_msgpack_subset(value: object) -> None:
    ensure_packable(value)
    # What passes the check also encodes and decodes.
    frame = encode_frame(Message("metrics", {"v": value}))
    assert decode_payload(frame[4:]).data.keys() == {"v"}


@pytest.mark.parametrize(
    ("value", "path", "reason"),
    [
        ({1, 2}, "data['v']", "set is not a MessagePack type"),
        (object(), "data['v']", "object is not a MessagePack type"),
        (msgpack.ExtType(5, b"x"), "data['v']", "ExtType is not a MessagePack type we accept"),
        (2**64, "data['v']", "outside MessagePack's 64-bit range"),
        (-(2**63) - 1, "data['v']", "outside MessagePack's 64-bit range"),
        ({1: "one"}, "data['v']", "map key 1 is a int"),
        ({None: 1}, "data['v']", "map key None is a NoneType"),
        ({(1, 2): 1}, "data['v']", "map key \\(1, 2\\) is a tuple"),
        ([0, {"deep": [{2.5: 0}]}], "data['v'][1]['deep'][0]", "map key 2.5 is a float"),
    ],
    ids=lambda v: repr(v)[:30],
)
def test_refuses_with_path_and_reason(value: object, path: str, reason: str) -> None:
    with pytest.raises(InvalidArgument, match=reason) as info:
        ensure_packable({"v": value}, "data")
    assert str(info.value).startswith(path + ":")


def test_too_deep_counts_from_the_top() -> None:
    # nested(MAX) inside {"v": ...} is one level too deep.
    with pytest.raises(InvalidArgument, match="deeper than"):
        ensure_packable({"v": nested(MAX_NESTING_DEPTH)})


def test_encode_frame_refuses_unpackable_data_and_metadata() -> None:
    with pytest.raises(InvalidArgument, match=r"^data\['ids'\]: set"):
        encode_frame(Message("request", {"ids": {1}}))
    with pytest.raises(InvalidArgument, match=r"^metadata: map key 3 is a int"):
        encode_frame(Message("request", {}, metadata={3: "x"}))  # type: ignore[dict-item]


@pytest.mark.parametrize(
    ("data", "where"),
    [({"text": "\ud800"}, "data['text']"), ({"a": ["ok", "x\udfff"]}, "data['a'][1]"),
     ({"\udc00": 1}, "data: map key")],
)
def test_encode_frame_refuses_strings_without_utf8_form(data: dict[str, Any], where: str) -> None:
    with pytest.raises(InvalidArgument, match="lone surrogate") as info:
        encode_frame(Message("request", data))
    assert str(info.value).startswith(where)


def test_find_unpackable_names_the_path_outermost_first() -> None:
    assert find_unpackable({"a": [1, {"b": 2**64}]}) == (
        ("a", 1, "b"), "integer 18446744073709551616 is outside MessagePack's 64-bit range")
    assert find_unpackable({"a": ["é", "✓", "\U0001f600"]}) is None


# Wider than `values`: int/float/None/tuple keys, sets, out-of-range ints.
_wild_leaves = st.one_of(
    values,
    st.integers(),
    st.sets(st.integers(), max_size=2),
    st.builds(object),
    st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=3)),
)
_wild = st.recursive(
    _wild_leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.tuples(children, children),
        st.dictionaries(
            st.one_of(st.text(max_size=3), st.integers(), st.none(), st.floats()),
            children,
            max_size=3,
        ),
    ),
    max_leaves=10,
)


@settings(max_examples=150, deadline=None)
@given(_wild)
def test_whatever_encodes_is_accepted_by_the_decoder(value: object) -> None:
    """Never send what the peer must reject: accepted values decode back."""
    try:
        frame = encode_frame(Message("metrics", {"v": value}))
    except InvalidArgument:
        return
    assert decode_payload(frame[4:]).data.keys() == {"v"}
