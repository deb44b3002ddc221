"""The public names of project_o.wire (docs/design.md, "Wire protocol") stay importable."""

from __future__ import annotations

import asyncio
import inspect

from project_o import wire

DOCUMENTED = {
    "Message",
    "MessageType",
    "DEFAULT_MAX_FRAME_SIZE",
    "encode_frame",
    "decode_payload",
    "FrameDecoder",
    "read_message",
    "write_message",
    "read_message_async",
    "write_message_async",
}


def test_documented_names_are_exported() -> None:
    assert DOCUMENTED <= set(wire.__all__)
    for name in wire.__all__:
        assert getattr(wire, name) is not None


def test_async_pair_is_async_and_blocking_pair_is_not() -> None:
    assert asyncio.iscoroutinefunction(wire.read_message_async)
    assert asyncio.iscoroutinefunction(wire.write_message_async)
    assert not asyncio.iscoroutinefunction(wire.read_message)
    assert not asyncio.iscoroutinefunction(wire.write_message)


def test_every_reader_and_writer_takes_a_max_frame_size() -> None:
    for function in (
        wire.encode_frame,
        wire.decode_payload,
        wire.read_message,
        wire.write_message,
        wire.read_message_async,
        wire.write_message_async,
        wire.FrameDecoder,
    ):
        parameter = inspect.signature(function).parameters["max_frame_size"]
        assert parameter.default == wire.DEFAULT_MAX_FRAME_SIZE
