"""An instance's outgoing frames: what its event loop sends in one pass leaves in one write.

::

    loop thread:  send(m1) send(m2) ... send(mN) ──► [f1 f2 ... fN] ──(next loop pass)──►
                                                        one sendall, in call order
    any other thread: send(m) ──► everything queued, then m, in one sendall, at once

When 64 requests each await a durable write, their acks arrive together,
the 64 handlers resume in one pass of the loop, and the 64 next writes
leave in one syscall instead of 64. A frame never waits longer than the
rest of the loop pass it was sent in, and a blocked loop sends nothing,
so heartbeats (sent from the loop) still stop when the loop hangs.

Frames keep the order of the calls whichever thread makes them: a worker
thread's send first writes what the loop queued.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Final

from project_o.errors import ConnectionClosed
from project_o.runtime.channel import Channel
from project_o.wire import Message

__all__ = ["Outbox"]

#: bytes of queued frames joined into one write; past it each frame is sent as it is
_JOIN_LIMIT: Final = 256 * 1024


class Outbox:
    """Sends :class:`Message` frames on ``channel``, batching those of the event loop's thread.

    ``on_broken`` hears of a socket that broke while a batch was written
    from the loop (a caller that sends from another thread gets the
    :class:`ConnectionClosed` itself).
    """

    def __init__(self, channel: Channel, on_broken: Callable[[ConnectionClosed], None]) -> None:
        self._channel = channel
        self._on_broken = on_broken
        self._lock = threading.Lock()  # frames must not interleave
        self._frames: list[bytes] = []
        self._flush_due = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """From now on, frames sent on this thread (the loop's) leave once per loop pass."""
        self._loop, self._loop_thread = loop, threading.get_ident()

    def detach(self) -> None:
        """Send what is queued and stop batching (the loop is ending)."""
        self._loop = self._loop_thread = None
        self.flush()

    def send(self, message: Message) -> None:
        """Send (or, on the loop's thread, queue) one frame.

        Raises InvalidArgument / FrameTooLarge if ``message`` cannot be
        framed (nothing queued), ConnectionClosed if the socket is gone.
        """
        frame = self._channel.encode(message)
        with self._lock:
            if self._loop is not None and threading.get_ident() == self._loop_thread:
                self._frames.append(frame)
                if not self._flush_due:
                    self._flush_due = True
                    self._loop.call_soon(self._flush_from_loop)
                return
            self._write(frame)

    def flush(self) -> None:
        """Send what is queued now; ConnectionClosed if the socket is gone."""
        with self._lock:
            self._write(b"")

    def _write(self, frame: bytes) -> None:
        """The caller holds the lock."""
        self._flush_due = False
        frames = self._frames
        if frame:
            frames.append(frame)
        if not frames:
            return
        self._frames = []
        if len(frames) == 1 or sum(map(len, frames)) > _JOIN_LIMIT:
            for one in frames:  # a checkpoint's state is not copied once more to be joined
                self._channel.send_bytes(one)
        else:
            self._channel.send_bytes(b"".join(frames))

    def _flush_from_loop(self) -> None:
        try:
            self.flush()
        except ConnectionClosed as exc:  # a callback's exception would only be logged
            self._on_broken(exc)
