"""The instance's end of its socket: blocking frames with a receive timeout.

::

    send(Message) ── encode_frame (InvalidArgument / FrameTooLarge: nothing sent)
                  └─ sendall ─── OSError ──────────────► ConnectionClosed(clean=False)

    receive(timeout) ── frames already decoded? ─► the oldest
                     └─ poll(timeout) ── nothing ──────► None (the caller sends a heartbeat)
                                     └─ recvmsg ─► FrameDecoder ─► Message | ProtocolError
                                                   │  EOF ────────► ConnectionClosed
                                                   └─ descriptors passed with the bytes
                                                      (SCM_RIGHTS) ─► take_fd()

A descriptor arrives with the first bytes of the frame that announces it
(the ``restore`` frame's sealed checkpoint), so it is here by the time
that frame is decoded.

``poll`` rather than ``epoll`` or ``selectors``: it needs no descriptor of
its own, so the instance's descriptor table stays exactly stdio + socket.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import time
from collections import deque
from typing import Final

from project_o.errors import ConnectionClosed
from project_o.wire import FrameDecoder, Message, encode_frame

__all__ = ["Channel"]

# Bytes asked of one recv(): a few syscalls for a large frame, little
# memory for a small one.
_RECV_CHUNK: Final = 256 * 1024
# Descriptors taken from one recvmsg(); the supervisor sends one at a time.
_MAX_FDS: Final = 4
# Descriptors kept waiting for take_fd(); beyond this the oldest is closed.
_FDS_KEPT: Final = 4


class Channel:
    """Frames over a connected stream socket.

    One thread receives; :meth:`send` may be called from several threads
    only under the owner's lock (frames must not interleave).
    """

    def __init__(self, sock: socket.socket, max_frame_size: int) -> None:
        self._sock = sock
        self._sock.setblocking(True)
        self.max_frame_size = max_frame_size
        self._decoder = FrameDecoder(max_frame_size)
        self._ready: deque[Message] = deque()
        self._fds: deque[int] = deque()
        self._poll = select.poll()
        self._poll.register(sock.fileno(), select.POLLIN)

    def fileno(self) -> int:
        """The socket's descriptor (for an event loop's reader)."""
        return self._sock.fileno()

    def send(self, message: Message) -> None:
        """Send one frame.

        Raises InvalidArgument / FrameTooLarge (before anything is sent) if
        the message cannot be framed; ConnectionClosed if the socket is gone.
        """
        self.send_bytes(self.encode(message))

    def encode(self, message: Message) -> bytes:
        """``message`` as one frame; InvalidArgument / FrameTooLarge if it cannot be one."""
        return encode_frame(message, self.max_frame_size)

    def send_bytes(self, frames: bytes) -> None:
        """Send whole frames already encoded (several at once: one syscall)."""
        try:
            self._sock.sendall(frames)
        except OSError as exc:
            raise ConnectionClosed(clean=False, detail=f"sending failed: {exc}") from exc

    def receive(self, timeout: float) -> Message | None:
        """The next message, or None if none arrived within ``timeout`` seconds.

        Raises ConnectionClosed at EOF and any ProtocolError the decoder finds.
        """
        deadline = time.monotonic() + max(timeout, 0.0)
        while not self._ready:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._poll.poll(remaining * 1000):
                return None
            self._read_some()
        return self._ready.popleft()

    def take_ready(self) -> list[Message]:
        """Frames already decoded and not yet received (handed to an event loop)."""
        ready = list(self._ready)
        self._ready.clear()
        return ready

    def read_available(self) -> list[Message]:
        """One ``recv`` (call it when the socket is readable) and the frames it completed.

        Raises as :meth:`receive` does. For an event loop's reader callback:
        the socket stays blocking, and a readable socket does not block.
        """
        self._read_some()
        return self.take_ready()

    def take_fd(self) -> int | None:
        """The oldest descriptor received and not yet taken (the caller closes it), or None."""
        return self._fds.popleft() if self._fds else None

    def _read_some(self) -> None:
        try:
            chunk, fds, _, _ = socket.recv_fds(self._sock, _RECV_CHUNK, _MAX_FDS,
                                               socket.MSG_CMSG_CLOEXEC)
        except OSError as exc:
            raise ConnectionClosed(clean=False, detail=f"receiving failed: {exc}") from exc
        self._keep(fds)
        if not chunk:
            self._decoder.feed_eof()  # raises if EOF fell inside a frame
            raise ConnectionClosed(clean=True)
        self._ready.extend(self._decoder.feed(chunk))

    def _keep(self, fds: list[int]) -> None:
        self._fds.extend(fds)
        while len(self._fds) > _FDS_KEPT:
            with contextlib.suppress(OSError):
                os.close(self._fds.popleft())
