"""The exceptions Project O raises, in one tree.

Every error a user can meet derives from :class:`ProjectOError`; where a
builtin describes the same kind of failure, the class inherits it too, so
``except ValueError`` keeps working for callers who do not know us::

    ProjectOError
    ├── ProtocolError                  a peer broke the wire protocol
    │   ├── FrameTooLarge              length prefix over the configured maximum
    │   ├── FrameDecodeError           bytes that are not a valid frame
    │   ├── UnknownMessageType         a well-formed frame of a type we do not speak
    │   └── ConnectionClosed           EOF (clean between frames, or inside one)
    ├── VaultError                     durable storage
    │   ├── WALCorruption              a bad record that is not a torn tail
    │   ├── WALFatalError              a write or fsync failed; the WAL is closed for good
    │   ├── VaultClosed                used after close()
    │   ├── CheckpointCorrupt          a checkpoint failed a hash or layout check
    │   └── CatalogError               SQLite catalog / migrations
    └── InvalidArgument (ValueError)   a caller passed something we cannot use

Messages say what was expected, what happened, and what to do next.
"""

from __future__ import annotations

__all__ = [
    "ProjectOError",
    "ProtocolError",
    "FrameTooLarge",
    "FrameDecodeError",
    "UnknownMessageType",
    "ConnectionClosed",
    "VaultError",
    "WALCorruption",
    "WALFatalError",
    "VaultClosed",
    "CheckpointCorrupt",
    "CatalogError",
    "InvalidArgument",
]


class ProjectOError(Exception):
    """Root of every error raised by Project O."""


class ProtocolError(ProjectOError):
    """The peer sent something that violates the wire protocol.

    The supervisor answers any of these by killing and replacing the
    instance that sent it; it never crashes on what an instance sends.
    """


class FrameTooLarge(ProtocolError):
    """A frame's length prefix exceeds the configured maximum.

    Raised *before* the payload is read, so an attacker cannot make us
    allocate the advertised size.
    """

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"frame of {size} bytes exceeds the maximum of {limit} bytes; "
            "raise max_frame_size if such frames are legitimate"
        )
        self.size = size
        self.limit = limit


class FrameDecodeError(ProtocolError):
    """The frame's bytes are not a MessagePack map with the required keys."""


class UnknownMessageType(ProtocolError):
    """A well-formed frame whose ``type`` is not one we speak."""

    def __init__(self, message_type: object) -> None:
        super().__init__(f"unknown message type {message_type!r}")
        self.message_type = message_type


class ConnectionClosed(ProtocolError):
    """The stream ended.

    ``clean`` is True when EOF fell between frames (the peer closed
    politely) and False when it fell inside a frame (the peer died or the
    stream was cut).
    """

    def __init__(self, clean: bool, detail: str = "") -> None:
        where = "between frames" if clean else "inside a frame"
        super().__init__(f"connection closed {where}{': ' + detail if detail else ''}")
        self.clean = clean


class VaultError(ProjectOError):
    """Durable storage failed or found something it will not trust."""


class WALCorruption(VaultError):
    """A WAL record is invalid somewhere other than the tail of the last segment.

    The vault refuses to open rather than silently skip acknowledged data.
    """

    def __init__(self, path: str, offset: int, reason: str) -> None:
        super().__init__(
            f"WAL corruption in {path} at offset {offset}: {reason}; "
            "run `project-o vault verify` for a full report and restore this "
            "segment from a backup"
        )
        self.path = path
        self.offset = offset
        self.reason = reason


class WALFatalError(VaultError):
    """A write or fsync failed (EIO, ENOSPC...).

    After an fsync error the kernel may have dropped the dirty pages, so a
    retry could report success for data that is gone. The WAL therefore
    refuses every further append; reopen it to recover what is on disk.
    """


class VaultClosed(VaultError):
    """The vault (or its WAL) was used after it was closed."""


class CheckpointCorrupt(VaultError):
    """A checkpoint file failed its header or payload check."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"checkpoint {path} rejected: {reason}")
        self.path = path
        self.reason = reason


class CatalogError(VaultError):
    """The SQLite catalog could not be opened, migrated or written."""


class InvalidArgument(ProjectOError, ValueError):
    """A caller passed a value Project O cannot use."""
