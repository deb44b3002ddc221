"""How much an instance may make the supervisor hold, write and forward.

An instance runs agent code, so everything it sends is hostile until
checked. Two kinds of bound, both per instance (docs/design.md, "Wire
protocol" and "Bounds on what an instance sends")::

    frames    instance_frame_limits(): the types an instance may send and the
              largest payload of each (a heartbeat is small, only a checkpoint
              is large), plus an object budget per payload; a frame over them
              is a protocol violation, refused before its body is read
    quotas    InstanceQuota: memory writes (bytes and count, token buckets:
              a burst, then a sustained rate) and stream events (bytes per
              request); the first one exceeded kills the instance with the reason

An instance killed for either is replaced like one that crashed: its death
counts against the restart intensity, and the event names the bound.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from project_o.errors import InvalidArgument
from project_o.wire import DEFAULT_MAX_OBJECTS, FrameLimits, MessageType

__all__ = [
    "MESSAGE_FRAME",
    "QUOTA_EXCEEDED",
    "SMALL_FRAME",
    "STREAM_FRAME",
    "InstanceQuota",
    "Quotas",
    "TokenBucket",
    "instance_frame_limits",
]

#: liveness and announcements (hello, heartbeat, metrics): a few hundred bytes in practice
SMALL_FRAME: Final = 64 * 1024
#: one ``ctx.emit`` event (a token, a progress note)
STREAM_FRAME: Final = 1024 * 1024
#: a response, a handler's error, one memory write, an evolution intent's sources
MESSAGE_FRAME: Final = 16 * 1024 * 1024
#: how the death reason of an instance that exceeded a quota starts
QUOTA_EXCEEDED: Final = "quota exceeded"

_MIB: Final = 1024 * 1024


def instance_frame_limits(max_frame_bytes: int,
                          max_objects: int = DEFAULT_MAX_OBJECTS) -> FrameLimits:
    """What the supervisor reads from an instance: only its types, each within its cap.

    ``max_frame_bytes`` is the checkpoint's cap (a whole state travels in
    one frame); every other type's cap is its own, never above it.
    """
    caps = {
        MessageType.HELLO: SMALL_FRAME,
        MessageType.HEARTBEAT: SMALL_FRAME,
        MessageType.METRICS: SMALL_FRAME,
        MessageType.STREAM: STREAM_FRAME,
        MessageType.RESPONSE: MESSAGE_FRAME,
        MessageType.ERROR: MESSAGE_FRAME,
        MessageType.WAL_ENTRY: MESSAGE_FRAME,
        MessageType.EVOLUTION_INTENT: MESSAGE_FRAME,
        MessageType.LLM_CALL: MESSAGE_FRAME,  # the messages and tools of one model call
        MessageType.CHECKPOINT: max_frame_bytes,
    }
    return FrameLimits({kind: min(cap, max_frame_bytes) for kind, cap in caps.items()},
                       max_objects=max_objects)


@dataclass(frozen=True)
class Quotas:
    """Per-instance quotas; each ``*_burst`` is spent first, then refilled at ``*_per_s``.

    The defaults are far above what a serving agent does (the WAL itself
    commits some thousands of writes a second) and stop a runaway or a
    hostile instance long before the vault's disk fills.
    """

    wal_bytes_burst: int = 512 * _MIB
    wal_bytes_per_s: float = 64 * _MIB
    wal_writes_burst: int = 200_000
    wal_writes_per_s: float = 50_000.0
    #: bytes of ``stream`` frames one request may produce (what a client's buffer holds)
    stream_bytes_per_request: int = 16 * _MIB

    def __post_init__(self) -> None:
        for name in ("wal_bytes_burst", "wal_bytes_per_s", "wal_writes_burst",
                     "wal_writes_per_s", "stream_bytes_per_request"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise InvalidArgument(f"quota {name} must be a positive number, got {value!r}")


class TokenBucket:
    """``capacity`` tokens, refilled at ``rate`` a second; :meth:`take` spends them."""

    def __init__(self, capacity: float, rate: float, clock: Callable[[], float]) -> None:
        self.capacity = capacity
        self.rate = rate
        self._clock = clock
        self._tokens = capacity
        self._at = clock()

    def take(self, amount: float) -> bool:
        """Spend ``amount`` tokens if there are that many; whether there were."""
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if amount > self._tokens:
            return False
        self._tokens -= amount
        return True


class InstanceQuota:
    """One instance's quotas, charged as it writes and streams.

    Each ``charge_*`` returns None while within the quota, else the reason
    to kill the instance with (it starts with :data:`QUOTA_EXCEEDED`).
    """

    def __init__(self, quotas: Quotas | None = None, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.quotas = quotas = quotas if quotas is not None else Quotas()
        self._wal_bytes = TokenBucket(quotas.wal_bytes_burst, quotas.wal_bytes_per_s, clock)
        self._wal_writes = TokenBucket(quotas.wal_writes_burst, quotas.wal_writes_per_s, clock)
        self._streamed: dict[str, int] = {}
        # events for no streaming request (late ones, or forged): one shared allowance
        self._stray = TokenBucket(quotas.stream_bytes_per_request,
                                  quotas.stream_bytes_per_request / 60.0, clock)

    def charge_write(self, size: int) -> str | None:
        """One memory write of ``size`` bytes (its packed operation and data)."""
        if not self._wal_writes.take(1):
            quotas = self.quotas
            return (f"{QUOTA_EXCEEDED}: more than {quotas.wal_writes_burst} memory writes "
                    f"at once, or over {quotas.wal_writes_per_s:g} a second")
        if not self._wal_bytes.take(size):
            quotas = self.quotas
            return (f"{QUOTA_EXCEEDED}: a write of {size} bytes passes its WAL byte quota "
                    f"({quotas.wal_bytes_burst} bytes at once, {quotas.wal_bytes_per_s:g} "
                    "a second)")
        return None

    def charge_stream(self, request_id: str, size: int) -> str | None:
        """A ``stream`` frame of ``size`` bytes for ``request_id``, a request streaming now."""
        total = self._streamed.get(request_id, 0) + size
        self._streamed[request_id] = total
        limit = self.quotas.stream_bytes_per_request
        if total > limit:
            return (f"{QUOTA_EXCEEDED}: request {request_id[:64]!r} streamed more than "
                    f"{limit} bytes of events")
        return None

    def charge_stray_stream(self, size: int) -> str | None:
        """A ``stream`` frame of ``size`` bytes for no request that is streaming."""
        if self._stray.take(size):
            return None
        return (f"{QUOTA_EXCEEDED}: more than {self.quotas.stream_bytes_per_request} bytes of "
                "events for requests that are not streaming")

    def request_done(self, request_id: str) -> None:
        """Forget what ``request_id`` streamed (it was answered, or gave up)."""
        self._streamed.pop(request_id, None)
