"""The thin file layer the WAL writes through.

Every byte the WAL puts on disk, and every fsync, goes through one
:class:`FileLayer` object::

    WAL ──open / write / fsync / ftruncate / unlink / fsync_directory──▶ FileLayer ──▶ os.*

The default layer calls :mod:`os` directly and adds nothing. It exists so
a test can subclass it and make one call fail with a real errno (EIO,
ENOSPC...), which is the only way to exercise the WAL's fatal-error path
without a broken disk. Reads do not go through it: a failed read cannot
lose an acknowledged write, so there is nothing to inject there.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

__all__ = ["FileLayer", "write_all"]

#: Permissions of new WAL segments (before the umask): owner and group read.
FILE_MODE = 0o644


class FileLayer:
    """Real file operations; subclass and override one to inject a failure.

    Methods raise :class:`OSError` exactly as the :mod:`os` function they
    wrap does; the WAL treats any such error on a write path as fatal.
    """

    def open(self, path: Path, flags: int) -> int:
        """Open ``path`` with ``os.open`` flags and return the descriptor."""
        return os.open(path, flags | os.O_CLOEXEC, FILE_MODE)

    def write(self, fd: int, data: bytes | memoryview) -> int:
        """Write once; return how many bytes the kernel took (may be fewer)."""
        return os.write(fd, data)

    def fsync(self, fd: int) -> None:
        """Flush the file's data and metadata (its size) to stable storage."""
        os.fsync(fd)

    def ftruncate(self, fd: int, length: int) -> None:
        """Cut the file to ``length`` bytes."""
        os.ftruncate(fd, length)

    def close(self, fd: int) -> None:
        """Close a descriptor returned by :meth:`open`."""
        os.close(fd)

    def unlink(self, path: Path) -> None:
        """Remove a file."""
        os.unlink(path)

    def fsync_directory(self, path: Path) -> None:
        """Make the directory's entries (files created, renamed, removed) durable.

        fsync on a file does not persist its name: after a crash a new
        file can be gone even though its data was synced, unless the
        directory itself was synced too.
        """
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_all(layer: FileLayer, fd: int, data: bytes) -> None:
    """Write every byte of ``data``, looping over short writes.

    A regular file takes a short write when it reaches a limit
    (RLIMIT_FSIZE, a full quota); the next write then reports the error,
    which we let propagate.
    """
    view = memoryview(data)
    while view:
        written = layer.write(fd, view)
        if written <= 0:
            # POSIX allows 0 only for a 0-byte request; treat it as an I/O error
            # rather than loop forever.
            raise OSError(errno.EIO, "write() took 0 bytes")
        view = view[written:]
