"""What may travel inside a message's ``data`` and ``metadata``.

The receiving side (:func:`project_o.wire.framing.decode_payload`) accepts
exactly this subset of MessagePack, so checking it before sending means we
never send a frame the peer must reject::

    value := None | bool | int in [-2**63, 2**64 - 1] | float | str | bytes | bytearray
           | msgpack.Timestamp
           | list[value] | tuple[value]          (a tuple arrives as a list)
           | dict[key, value]
    key   := str | bytes
    nesting depth <= MAX_NESTING_DEPTH

Why map keys must be ``str`` or ``bytes``: the decoder runs msgpack with
``strict_map_key=True``. Python's hash of an int is predictable (``hash(n)
== n`` for small ``n``; ``n`` and ``n + 2**61 - 1`` collide), so a peer
could send one map of colliding int keys and make the supervisor spend
quadratic time building the dict. ``str`` and ``bytes`` hashes are salted
per process, so that attack does not work.

A ``str`` must have a UTF-8 form: a lone surrogate (which JSON's
``"\ud800"`` escape produces) has none, and msgpack could not pack it.

Why the timestamp extension but no other extension type: msgpack decodes
extension -1 into :class:`msgpack.Timestamp` before any hook can refuse
it, so we accept it on both sides; every other extension is refused.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

import msgpack

from project_o.errors import InvalidArgument

__all__ = ["MAX_NESTING_DEPTH", "Packed", "ensure_packable", "find_unpackable",
           "nested_deeper_than"]

#: Deepest nesting of lists/maps allowed inside ``data`` or ``metadata``.
#: Well under msgpack's packer limit (about 1024 levels), its unpacker
#: stack (1024 levels) and Python's recursion limit, which the recursive
#: check below relies on. A decoder accepts deeper values (up to the
#: unpacker's stack): a side that stores what it received and sends it
#: back later checks :func:`nested_deeper_than` first.
MAX_NESTING_DEPTH: Final = 256

# The MessagePack int family: int 64 at the bottom, uint 64 at the top.
_INT_MIN: Final = -(2**63)
_INT_MAX: Final = 2**64 - 1

_LEAF_TYPES: Final = (type(None), bool, float, bytes, bytearray, msgpack.Timestamp)


class _NotPackable(Exception):
    """Internal: carries the reason up the recursion, collecting the path."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.steps: list[object] = []  # map keys and list indices, innermost first


@dataclass(frozen=True, eq=False)
class Packed:
    """A value already checked and packed once, sent as these bytes (never walked again).

    For what a process only forwards: the gateway checks a request's input
    (:func:`find_unpackable`, naming the bad field in a 422) and packs it;
    the supervisor passes it along, and :func:`~project_o.wire.framing.encode_frame`
    splices ``data`` into the frame where the value would go. ``value`` is
    kept for whoever reads it in-process.
    """

    value: Any
    data: bytes

    @classmethod
    def of(cls, value: Any) -> Packed:
        """Pack ``value``, which :func:`find_unpackable` has already passed."""
        return cls(value, msgpack.packb(value, use_bin_type=True))


def ensure_packable(value: object, where: str = "value") -> None:
    """Raise :class:`~project_o.errors.InvalidArgument` unless ``value`` may be sent.

    ``where`` names the value in the error (``"data"`` gives messages like
    ``data['items'][3]: set is not a MessagePack type``).
    """
    found = find_unpackable(value)
    if found is not None:
        path, reason = found
        subscripts = "".join(f"[{step!r}]" for step in path)
        raise InvalidArgument(
            f"{where}{subscripts}: {reason}; convert it to plain "
            "None/bool/int/float/str/bytes/list/dict before sending"
        )


def find_unpackable(value: object) -> tuple[tuple[object, ...], str] | None:
    """The first part of ``value`` that may not be sent, or ``None`` if all may.

    Returns ``(path, reason)``: the map keys and list indices that lead to
    it, outermost first (empty for ``value`` itself), and what is wrong.
    """
    try:
        _check(value, 0)
    except _NotPackable as exc:
        return tuple(reversed(exc.steps)), exc.reason
    return None


def _check(value: object, depth: int) -> None:
    if isinstance(value, int) and not isinstance(value, bool):
        if not _INT_MIN <= value <= _INT_MAX:
            raise _NotPackable(f"integer {value} is outside MessagePack's 64-bit range")
    elif isinstance(value, str):
        _check_text(value)
    elif isinstance(value, _LEAF_TYPES):
        return
    elif isinstance(value, msgpack.ExtType):
        # Checked before tuple: ExtType is a namedtuple, but msgpack packs
        # it as an extension, which the decoder refuses.
        raise _NotPackable("ExtType is not a MessagePack type we accept (only Timestamp)")
    elif isinstance(value, (list, tuple)):
        _check_depth(depth)
        _check_items(value, depth)
    elif isinstance(value, dict):
        _check_depth(depth)
        _check_map(value, depth)
    else:
        raise _NotPackable(f"{type(value).__name__} is not a MessagePack type")


def _check_text(text: str) -> None:
    if text.isascii():
        return  # the common case, and a fast one
    try:
        text.encode()
    except UnicodeEncodeError as exc:
        raise _NotPackable(
            f"str holds a lone surrogate ({text[exc.start]!r} at {exc.start}), which has "
            "no UTF-8 form"
        ) from None


def _check_depth(depth: int) -> None:
    if depth >= MAX_NESTING_DEPTH:
        raise _NotPackable(f"nested deeper than {MAX_NESTING_DEPTH} lists/maps")


def _check_items(items: list[object] | tuple[object, ...], depth: int) -> None:
    for index, item in enumerate(items):
        try:
            _check(item, depth + 1)
        except _NotPackable as exc:
            exc.steps.append(index)
            raise


def _check_map(mapping: dict[object, object], depth: int) -> None:
    for key, item in mapping.items():
        if not isinstance(key, (str, bytes)):
            raise _NotPackable(
                f"map key {key!r} is a {type(key).__name__}; keys must be str or bytes"
            )
        if isinstance(key, str) and not key.isascii():
            try:
                _check_text(key)
            except _NotPackable as exc:
                exc.reason = f"map key: {exc.reason}"
                raise
        try:
            _check(item, depth + 1)
        except _NotPackable as exc:
            exc.steps.append(key)
            raise


def nested_deeper_than(value: object, limit: int) -> bool:
    """Whether ``value`` holds lists/maps nested more than ``limit`` deep (itself counts one).

    Iterative, and it only walks containers: a long list of numbers costs one
    ``isinstance`` per item, and no depth can exhaust Python's stack.
    """
    pending: list[tuple[object, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            children: Iterable[object] = item.values()
        elif isinstance(item, (list, tuple)):
            children = item
        else:
            continue
        if depth > limit:
            return True
        pending.extend((child, depth + 1) for child in children
                       if isinstance(child, (dict, list, tuple)))
    return False
