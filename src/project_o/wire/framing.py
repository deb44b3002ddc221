"""Frames: how a :class:`~project_o.wire.messages.Message` crosses a byte stream.

One frame::

    offset 0          4                                          4 + length
           +----------+------------------------------------------+
           |  length  |  payload: one MessagePack map             |
           +----------+------------------------------------------+
            u32, big-endian,
            payload bytes only
            (prefix excluded)

    payload = {"type": str,          a MessageType value
               "timestamp": float,   unix seconds
               "data": map,          keys str/bytes (see packable)
               "metadata": map}      exactly these four keys, nothing after the map

Reading a frame, in order, each step raising its own error::

    length > max_frame_size?       -> FrameTooLarge      (before one payload byte is read)
    payload not one msgpack map    -> FrameDecodeError   (bad bytes, trailing bytes,
      with exactly the four keys      not a map, missing/extra keys, wrong field types,
      of the right types?             an extension type, nesting too deep)
    type not a MessageType?        -> UnknownMessageType
    stream ends                    -> ConnectionClosed(clean=True between frames,
                                                       clean=False inside one)

Memory: a frame costs at most ``max_frame_size`` of buffered bytes, plus
the decoded objects. msgpack caps every string/array/map length at the
payload size, so decoding is linear in the payload, but the decoded form
can be large: a payload made only of empty maps expands about 75x in
Python objects. A reader of an untrusted peer passes
:class:`~project_o.wire.limits.FrameLimits`: a cap per message type
(checked on the payload's head, before the body is read) and a budget of
objects per payload, which bounds that expansion whatever the size.

Encoding is just as strict: :func:`encode_frame` refuses a message the
other side would reject (too large, or contents that are not packable), so
a protocol error always means the peer misbehaved, never that we did.
"""

from __future__ import annotations

import math
import struct
import time
from typing import Any, Final

import msgpack

from project_o.errors import (
    ConnectionClosed,
    FrameDecodeError,
    FrameTooLarge,
    InvalidArgument,
    ProtocolError,
    UnknownMessageType,
)
from project_o.wire.limits import (
    COUNT_FROM,
    HEAD_SIZE,
    FrameLimits,
    ObjectBudgetExceeded,
    object_counter,
    peek_type,
)
from project_o.wire.messages import Message, MessageType
from project_o.wire.packable import Packed, ensure_packable

__all__ = [
    "DEFAULT_MAX_FRAME_SIZE",
    "FRAME_KEYS",
    "PREFIX_SIZE",
    "FrameDecoder",
    "check_frame_size",
    "check_head",
    "decode_payload",
    "encode_forwarded_frame",
    "encode_frame",
    "finish_unpacker",
    "frame_cap",
    "new_unpacker",
    "parse_prefix",
    "validate_max_frame_size",
]

#: Default limit on a frame's payload, in bytes (the design's 64 MiB).
DEFAULT_MAX_FRAME_SIZE: Final = 64 * 1024 * 1024

_PREFIX: Final = struct.Struct(">I")
#: Size of the length prefix in bytes.
PREFIX_SIZE: Final = _PREFIX.size
# The largest length a u32 prefix can carry; no limit may go beyond it.
_PREFIX_MAX: Final = 2**32 - 1

#: The keys of the payload map, exactly.
FRAME_KEYS: Final = frozenset({"type", "timestamp", "data", "metadata"})
_DATA_KEY: Final = msgpack.packb("data")
_EMPTY_METADATA: Final = msgpack.packb("metadata") + b"\x80"

_ADVICE: Final = (
    "the peer is not speaking this protocol or the stream lost sync; drop the connection"
)


def validate_max_frame_size(max_frame_size: int) -> int:
    """Return ``max_frame_size`` if it is a usable limit, else raise InvalidArgument."""
    if isinstance(max_frame_size, bool) or not isinstance(max_frame_size, int):
        raise InvalidArgument(f"max_frame_size must be an int, got {type(max_frame_size).__name__}")
    if not 1 <= max_frame_size <= _PREFIX_MAX:
        raise InvalidArgument(
            f"max_frame_size must be between 1 and {_PREFIX_MAX} bytes (a u32 length "
            f"prefix), got {max_frame_size}"
        )
    return max_frame_size


def frame_cap(max_frame_size: int, limits: FrameLimits | None) -> int:
    """The largest payload a reader takes: the largest of ``limits``' caps where it has
    them (they replace ``max_frame_size``), else ``max_frame_size``, checked."""
    return limits.max_frame_size if limits is not None else validate_max_frame_size(max_frame_size)


def check_frame_size(size: int, max_frame_size: int) -> None:
    """Raise :class:`~project_o.errors.FrameTooLarge` if ``size`` exceeds the limit."""
    if size > max_frame_size:
        raise FrameTooLarge(size, max_frame_size)


def parse_prefix(prefix: bytes | bytearray | memoryview) -> int:
    """The payload length announced by a 4-byte prefix."""
    (size,) = _PREFIX.unpack(prefix)
    return int(size)


def encode_frame(message: Message, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> bytes:
    """Encode ``message`` as one frame, length prefix included.

    Raises :class:`~project_o.errors.InvalidArgument` if ``data`` or
    ``metadata`` holds something the peer would reject, and
    :class:`~project_o.errors.FrameTooLarge` if the payload would exceed
    ``max_frame_size``.
    """
    validate_max_frame_size(max_frame_size)
    if any(isinstance(value, Packed) for value in message.data.values()):
        return _encode_with_packed(message, max_frame_size)
    ensure_packable(message.data, "data")
    ensure_packable(message.metadata, "metadata")
    payload = _pack(
        {
            "type": str(message.type),
            "timestamp": message.timestamp,
            "data": message.data,
            "metadata": message.metadata,
        }
    )
    check_frame_size(len(payload), max_frame_size)
    return _PREFIX.pack(len(payload)) + payload


def _encode_with_packed(message: Message, max_frame_size: int) -> bytes:
    """:func:`encode_frame` for a ``data`` holding :class:`Packed` values: their bytes as is.

    The other values are checked as usual; the bytes equal those of
    :func:`encode_frame` with each Packed replaced by its value.
    """
    rest = {k: v for k, v in message.data.items() if not isinstance(v, Packed)}
    ensure_packable(rest, "data")
    ensure_packable(message.metadata, "metadata")
    size = len(message.data)
    parts = [b"\x84", _pack("type"), _pack(str(message.type)), _pack("timestamp"),
             _pack(message.timestamp), _DATA_KEY,
             bytes([0x80 | size]) if size <= 15 else b"\xde" + size.to_bytes(2, "big")]
    for key, value in message.data.items():
        parts += (_pack(key), value.data if isinstance(value, Packed) else _pack(value))
    parts += (_pack("metadata"), _pack(message.metadata))
    payload = b"".join(parts)
    check_frame_size(len(payload), max_frame_size)
    return _PREFIX.pack(len(payload)) + payload


def encode_forwarded_frame(
    message_type: MessageType,
    packed_data: dict[str, bytes],
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
) -> bytes:
    """One frame whose ``data`` values are already MessagePack-encoded, spliced in as is.

    For what a sender only forwards (a journaled write tailed to a
    standby): its bytes were packed once, from a value that came out of a
    frame this side decoded (so the peer accepts it), and are not packed
    again. The bytes equal :func:`encode_frame` of the decoded message.
    """
    if len(packed_data) > 15:
        raise InvalidArgument("a forwarded frame's data holds at most 15 keys")
    head = _PACKED_HEAD[message_type] if message_type in _PACKED_HEAD else _pack_head(message_type)
    parts = [head, _pack(time.time()), _DATA_KEY, bytes([0x80 | len(packed_data)])]
    for key, value in packed_data.items():
        parts += (_pack(key), value)
    parts.append(_EMPTY_METADATA)
    payload = b"".join(parts)
    check_frame_size(len(payload), max_frame_size)
    return _PREFIX.pack(len(payload)) + payload


def _pack_head(message_type: MessageType) -> bytes:
    # fixmap of the four frame keys, in encode_frame's order: type, timestamp, data, metadata
    head = b"\x84" + _pack("type") + _pack(str(message_type)) + _pack("timestamp")
    _PACKED_HEAD[message_type] = head
    return head


_PACKED_HEAD: dict[MessageType, bytes] = {}


def _pack(fields: Any) -> bytes:
    try:
        return msgpack.packb(fields, use_bin_type=True)  # type: ignore[no-any-return]
    except (TypeError, ValueError, OverflowError) as exc:
        # ensure_packable catches the common cases with a path; this catches
        # the rest, e.g. a str with lone surrogates that has no UTF-8 form.
        raise InvalidArgument(
            f"message could not be encoded as MessagePack: {exc}; "
            "send plain None/bool/int/float/str/bytes/list/dict values"
        ) from exc


def decode_payload(
    payload: bytes | bytearray | memoryview, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
    *, limits: FrameLimits | None = None,
) -> Message:
    """Decode one frame's payload (prefix already removed) into a Message.

    With ``limits``, the type must be one they accept, the payload within
    its cap, and the decoded objects within their budget (``max_frame_size``
    is then theirs). Raises :class:`~project_o.errors.FrameTooLarge`,
    :class:`~project_o.errors.FrameDecodeError`,
    :class:`~project_o.errors.UnknownMessageType` or
    :class:`~project_o.errors.UnexpectedMessageType`; never anything else.
    """
    check_frame_size(len(payload), frame_cap(max_frame_size, limits))
    if limits is not None:
        check_head(payload, len(payload), limits)
    max_objects = limits.max_objects if limits is not None else None
    message = _message_from(_unpack(payload, max_objects))
    if limits is not None:
        limits.check(message.type, len(payload))
    return message


def check_head(head: bytes | bytearray | memoryview, size: int, limits: FrameLimits) -> None:
    """Refuse a ``size``-byte payload from its first bytes: wrong type, or over its cap.

    Payloads up to ``limits.read_whole_up_to`` pass (their type is checked
    after decoding); a larger one must start with its type. ``head`` holds
    at least ``min(size, HEAD_SIZE)`` bytes of it.
    """
    if size <= limits.read_whole_up_to:
        return
    kind = peek_type(head)
    if kind is None:
        raise FrameDecodeError(
            f"a frame of {size} bytes must start with its type (the map's first key), "
            f"got {bytes(head[:HEAD_SIZE])!r}; {_ADVICE}"
        )
    try:
        known = MessageType(kind)
    except ValueError:
        raise UnknownMessageType(kind) from None
    limits.check(known, size)


def _unpack(payload: bytes | bytearray | memoryview, max_objects: int | None = None) -> object:
    size = len(payload)
    counted = max_objects is not None and size >= COUNT_FROM
    try:
        hook = object_counter(max_objects) if counted and max_objects is not None else None
        return msgpack.unpackb(payload, **_unpack_options(size, max_objects), raw=False,
                               object_hook=hook, list_hook=hook)
    except ObjectBudgetExceeded:
        raise _too_many(size, max_objects) from None
    except (ValueError, TypeError, RecursionError, msgpack.UnpackException) as exc:
        raise _not_msgpack(size, exc) from exc


def _unpack_options(size: int, max_objects: int | None) -> dict[str, Any]:
    # Each length cap is the payload size (a map entry needs >= 2 bytes): a
    # lying length header inside the payload cannot make msgpack pre-allocate
    # more than the frame it came in, nor (with a budget) one container more
    # than the budget: the counting hook sees a container only once it is built.
    most = size if max_objects is None else min(size, max_objects)
    return {
        "use_list": True,
        "strict_map_key": True,  # see packable: no hash-flooding with int keys
        "ext_hook": _refuse_extension,
        "max_str_len": size,
        "max_bin_len": size,
        "max_array_len": most,
        "max_map_len": min(size // 2, most),
        "max_ext_len": size,
    }


def new_unpacker(size: int, max_objects: int) -> msgpack.Unpacker:
    """A streaming unpacker for one ``size``-byte payload, counting its objects.

    Feed it the payload in chunks and call :func:`finish_unpacker` after
    each: it holds only what it has not decoded yet, so a large frame is
    never buffered whole.
    """
    hook = object_counter(max_objects)
    return msgpack.Unpacker(None, max_buffer_size=max(size, 1), raw=False, object_hook=hook,
                            list_hook=hook, **_unpack_options(size, max_objects))


def finish_unpacker(unpacker: msgpack.Unpacker, size: int, fed: int, max_objects: int,
                    ) -> Message | None:
    """The Message once ``fed`` bytes (of ``size``) completed it; None while more are needed.

    Raises as :func:`decode_payload` does (without the type checks, which the
    caller made on the head).
    """
    try:
        fields = unpacker.unpack()
    except msgpack.OutOfData:
        if fed < size:
            return None
        raise FrameDecodeError(f"frame payload of {size} bytes ends inside a MessagePack "
                               f"value; {_ADVICE}") from None
    except ObjectBudgetExceeded:
        raise _too_many(size, max_objects) from None
    except (ValueError, TypeError, RecursionError, msgpack.UnpackException) as exc:
        raise _not_msgpack(size, exc) from exc
    if fed < size or unpacker.tell() != size:
        raise FrameDecodeError(f"frame payload of {size} bytes holds bytes after its map; "
                               f"{_ADVICE}")
    return _message_from(fields)


def _not_msgpack(size: int, exc: BaseException) -> FrameDecodeError:
    return FrameDecodeError(
        f"frame payload of {size} bytes is not one valid MessagePack value "
        f"({type(exc).__name__}: {exc}); {_ADVICE}"
    )


def _too_many(size: int, max_objects: int | None) -> FrameDecodeError:
    return FrameDecodeError(
        f"frame payload of {size} bytes decodes into more than {max_objects} maps, arrays "
        f"and elements (max_objects); refused before it could exhaust memory; {_ADVICE}"
    )


def _refuse_extension(code: int, data: bytes) -> object:
    raise FrameDecodeError(
        f"frame payload holds MessagePack extension type {code} ({len(data)} bytes); "
        f"only the timestamp extension is allowed; {_ADVICE}"
    )


def _message_from(fields: object) -> Message:
    if not isinstance(fields, dict):
        raise FrameDecodeError(
            f"frame payload is a MessagePack {type(fields).__name__}, expected a map "
            f"with keys {sorted(FRAME_KEYS)}; {_ADVICE}"
        )
    _check_keys(fields)
    kind = _field(fields, "type", str, "a str")
    timestamp = _field(fields, "timestamp", float, "a float (unix seconds)")
    if not math.isfinite(timestamp):
        raise FrameDecodeError(f"frame timestamp must be finite, got {timestamp!r}; {_ADVICE}")
    data = _field(fields, "data", dict, "a map")
    metadata = _field(fields, "metadata", dict, "a map")
    try:
        known = MessageType(kind)
    except ValueError:
        raise UnknownMessageType(kind) from None
    return Message(type=known, data=data, metadata=metadata, timestamp=timestamp)


def _check_keys(fields: dict[Any, Any]) -> None:
    keys = set(fields)
    if keys == FRAME_KEYS:
        return
    missing = sorted(FRAME_KEYS - keys)
    # Extra keys may be str or bytes; repr() makes them sortable together.
    extra = sorted(repr(key) for key in keys - FRAME_KEYS)
    raise FrameDecodeError(
        f"frame map must have exactly the keys {sorted(FRAME_KEYS)}; "
        f"missing {missing}, unexpected [{', '.join(extra)}]; {_ADVICE}"
    )


def _field(fields: dict[str, Any], name: str, kind: type, expected: str) -> Any:
    value = fields[name]
    if not isinstance(value, kind):
        raise FrameDecodeError(
            f"frame field {name!r} must be {expected}, got {type(value).__name__} "
            f"{_short_repr(value)}; {_ADVICE}"
        )
    return value


def _short_repr(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class FrameDecoder:
    """Turns a byte stream, fed in chunks of any size, into Messages.

    ``feed(chunk)`` returns every message completed by the chunk, in order.
    A length prefix over ``max_frame_size`` raises FrameTooLarge as soon as
    its four bytes arrive; nothing is buffered beyond what was fed. With
    ``limits`` (:class:`~project_o.wire.limits.FrameLimits`), a frame of a
    type they refuse, or over its type's cap, is refused as soon as the
    head of its payload arrives.

    Any protocol error ends the stream: it is raised from the ``feed`` call
    that reached the bad frame (messages completed earlier in that same
    call are dropped with it), and every later ``feed`` raises it again.
    At end of input call :meth:`feed_eof`, which tells a clean close from
    one in the middle of a frame.
    """

    def __init__(
        self, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE, *, limits: FrameLimits | None = None
    ) -> None:
        self._max_frame_size = frame_cap(max_frame_size, limits)
        self._limits = limits
        self._buffer = bytearray()
        self._error: ProtocolError | None = None

    @property
    def max_frame_size(self) -> int:
        """The payload limit this decoder enforces, in bytes."""
        return self._max_frame_size

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a returned message."""
        return len(self._buffer)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Message]:
        """Add ``data`` to the stream; return the messages it completed."""
        self._raise_if_failed()
        self._buffer += data
        messages: list[Message] = []
        try:
            while (payload := self._next_payload()) is not None:
                messages.append(decode_payload(payload, self._max_frame_size,
                                               limits=self._limits))
        except ProtocolError as exc:
            self._error = exc
            raise
        return messages

    def feed_eof(self) -> None:
        """Declare end of input: raise unless the stream ended between frames.

        Raises the earlier protocol error if there was one, else
        ConnectionClosed(clean=False) if part of a frame is still buffered.
        """
        self._raise_if_failed()
        if self._buffer:
            raise ConnectionClosed(
                clean=False, detail=f"{len(self._buffer)} bytes of an unfinished frame"
            )

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    def _next_payload(self) -> bytes | None:
        if len(self._buffer) < PREFIX_SIZE:
            return None
        size = parse_prefix(self._buffer[:PREFIX_SIZE])
        check_frame_size(size, self._max_frame_size)
        end = PREFIX_SIZE + size
        if self._limits is not None and len(self._buffer) >= PREFIX_SIZE + min(size, HEAD_SIZE):
            check_head(self._buffer[PREFIX_SIZE:PREFIX_SIZE + HEAD_SIZE], size, self._limits)
        if len(self._buffer) < end:
            return None
        payload = bytes(self._buffer[PREFIX_SIZE:end])
        # Deleting from the front of a bytearray is cheap in CPython (it
        # moves a start offset), so a chunk of many small frames stays linear.
        del self._buffer[:end]
        return payload
