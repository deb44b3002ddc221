"""What one side of a channel accepts from its peer: frame caps per type, decode budgets.

A peer is untrusted (an instance runs agent code; a zygote imported it),
so a reader can be given :class:`FrameLimits`::

    length prefix ── over every cap ───────────────────────> FrameTooLarge (nothing read)
        │ over the smallest cap: read the first HEAD_SIZE bytes, the frame's "type"
        ├── type not in caps ─────────────────────────────> UnexpectedMessageType
        ├── length over that type's cap ──────────────────> FrameTooLarge (body unread)
        ▼
    decode, counting maps, arrays and their elements ─ over max_objects ─> FrameDecodeError
        (payloads under COUNT_FROM bytes are decoded uncounted: small is cheap anyway)

Why a count as well as a size: one byte of MessagePack (``0x80``, an
empty map) becomes ~70 bytes of Python, so a 256 MiB frame of empty maps
would cost the reader gigabytes. With the count, what a payload can cost
is bounded by ``max_objects`` whatever its size. Depth needs no limit of
ours: msgpack's C unpacker has a fixed stack of 1024 containers and
refuses deeper nesting (StackError, reported as FrameDecodeError).

The type is read from the payload's head, where :func:`encode_frame`
always puts it (the frame map's first key). A large frame whose head is
not ``{"type": ...`` is refused: a peer speaking this protocol never sends one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from project_o.errors import FrameTooLarge, InvalidArgument, UnexpectedMessageType
from project_o.wire.messages import MessageType

__all__ = [
    "COUNT_FROM",
    "DEFAULT_MAX_OBJECTS",
    "HEAD_SIZE",
    "FrameLimits",
    "ObjectBudgetExceeded",
    "object_counter",
    "peek_type",
]

#: maps + arrays + their elements one payload may decode into. ~70 bytes of
#: Python each at worst (an empty map in a list), so ~300 MB of what a hostile
#: payload can cost; a 100 MB agent state holds well under a million
DEFAULT_MAX_OBJECTS: Final = 4_000_000
#: payloads shorter than this are decoded without counting (at most ~70x their size)
COUNT_FROM: Final = 64 * 1024
#: bytes of a payload enough to hold ``{"type": "<any MessageType>"``
HEAD_SIZE: Final = 32
# fixmap of 4 entries, then the fixstr "type"
_HEAD_PREFIX: Final = b"\x84\xa4type"


class ObjectBudgetExceeded(Exception):
    """Raised from inside the unpacker: the payload holds more objects than allowed."""


@dataclass(frozen=True)
class FrameLimits:
    """The types a peer may send, the largest payload of each, and the object budget.

    ``caps`` maps each accepted :class:`MessageType` to its largest payload
    in bytes; a type not in it is refused. ``max_objects`` bounds the maps,
    arrays and elements one payload may decode into.
    """

    caps: Mapping[MessageType, int]
    max_objects: int = DEFAULT_MAX_OBJECTS
    _smallest: int = field(init=False, repr=False, compare=False)
    _largest: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.caps:
            raise InvalidArgument("FrameLimits needs at least one accepted message type")
        caps: dict[MessageType, int] = {}
        for kind, cap in self.caps.items():
            if isinstance(cap, bool) or not isinstance(cap, int) or not 1 <= cap < 2**32:
                raise InvalidArgument(f"the cap of {kind!r} must be 1..2**32-1 bytes, got {cap!r}")
            caps[MessageType(kind)] = cap
        if isinstance(self.max_objects, bool) or not isinstance(self.max_objects, int) \
                or self.max_objects < 1:
            raise InvalidArgument(f"max_objects must be a positive int, got {self.max_objects!r}")
        object.__setattr__(self, "caps", MappingProxyType(caps))
        object.__setattr__(self, "_smallest", min(caps.values()))
        object.__setattr__(self, "_largest", max(caps.values()))

    @property
    def max_frame_size(self) -> int:
        """The largest payload of any accepted type."""
        return self._largest

    @property
    def read_whole_up_to(self) -> int:
        """Payloads up to this size are read before their type is known (the smallest cap)."""
        return self._smallest

    def check(self, message_type: str, size: int) -> None:
        """Raise unless a ``message_type`` payload of ``size`` bytes is accepted."""
        cap = self.caps.get(message_type)  # type: ignore[call-overload]
        if cap is None:
            raise UnexpectedMessageType(str(message_type), sorted(str(k) for k in self.caps))
        if size > cap:
            raise FrameTooLarge(size, cap, message_type=str(message_type))


def peek_type(head: bytes | bytearray | memoryview) -> str | None:
    """The frame type at the start of a payload, or None if the head is not ``{"type": str``."""
    head = bytes(head[:HEAD_SIZE])
    if not head.startswith(_HEAD_PREFIX) or len(head) <= len(_HEAD_PREFIX):
        return None
    start = len(_HEAD_PREFIX)
    marker = head[start]
    if 0xA0 <= marker <= 0xBF:  # fixstr
        length, start = marker & 0x1F, start + 1
    elif marker == 0xD9 and len(head) > start + 1:  # str 8
        length, start = head[start + 1], start + 2
    else:
        return None
    if len(head) < start + length:
        return None
    try:
        return head[start:start + length].decode("utf-8")
    except UnicodeDecodeError:
        return None


def object_counter(limit: int) -> Callable[[Any], Any]:
    """A msgpack ``object_hook``/``list_hook`` that counts containers and their elements.

    msgpack limits each container's length but not a payload's total; the
    hook runs once per map or array (its elements are built by then, so
    the unpacker's per-container length limit must not exceed ``limit`` either).
    """
    seen = 0

    def count(value: Any) -> Any:
        nonlocal seen
        seen += 1 + len(value)
        if seen > limit:
            raise ObjectBudgetExceeded(limit)
        return value

    return count
