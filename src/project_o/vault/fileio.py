"""The thin file layer the WAL writes through.

Every byte the WAL puts on disk, and every sync, goes through one
:class:`FileLayer` object::

    WAL ──open / pwrite / fdatasync / fsync / ftruncate / unlink / fsync_directory──▶
        FileLayer ──▶ os.*

The default layer calls :mod:`os` directly and adds nothing. It exists so
a test can subclass it and make one call fail with a real errno (EIO,
ENOSPC...), which is the only way to exercise the WAL's fatal-error path
without a broken disk. Reads do not go through it: a failed read cannot
lose an acknowledged write, so there is nothing to inject there.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path

__all__ = ["FILE_MODE", "PRIVATE_UMASK", "FileLayer", "private_umask", "pwrite_all"]

#: Permissions of new WAL segments: the owner's alone (a vault holds an agent's memory).
FILE_MODE = 0o600
#: The umask of every process that writes a vault (CLI, heart, supervisor): what
#: the vault does not chmod itself (the catalog and its SQLite journals, the
#: supervisor's and the heart's state files, directories) is born private too.
PRIVATE_UMASK = 0o077


@contextlib.contextmanager
def private_umask() -> Iterator[None]:
    """Run the body with :data:`PRIVATE_UMASK` added to the umask; restore it after.

    A process that is about to ``exec`` keeps it (the umask survives exec).
    """
    previous = os.umask(PRIVATE_UMASK)
    os.umask(previous | PRIVATE_UMASK)
    try:
        yield
    finally:
        os.umask(previous)


class FileLayer:
    """Real file operations; subclass and override one to inject a failure.

    Methods raise :class:`OSError` exactly as the :mod:`os` function they
    wrap does; the WAL treats any such error on a write path as fatal.
    """

    def open(self, path: Path, flags: int) -> int:
        """Open ``path`` with ``os.open`` flags and return the descriptor."""
        return os.open(path, flags | os.O_CLOEXEC, FILE_MODE)

    def pwrite(self, fd: int, data: bytes | memoryview, offset: int) -> int:
        """Write once at ``offset``; return how many bytes the kernel took (may be fewer)."""
        return os.pwrite(fd, data, offset)

    def fdatasync(self, fd: int) -> None:
        """Flush the file's data, and the metadata needed to read it back, to stable storage.

        The WAL syncs records with this: they overwrite space that was
        already allocated and synced, so no metadata (size, block map)
        changes and the filesystem journal is not involved.
        """
        os.fdatasync(fd)

    def fsync(self, fd: int) -> None:
        """Flush the file's data and all of its metadata (used when the size changes)."""
        os.fsync(fd)

    def ftruncate(self, fd: int, length: int) -> None:
        """Cut (or extend with a hole) the file to ``length`` bytes."""
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


def pwrite_all(layer: FileLayer, fd: int, data: bytes, offset: int) -> None:
    """Write every byte of ``data`` at ``offset``, looping over short writes.

    A regular file takes a short write when it reaches a limit
    (RLIMIT_FSIZE, a full quota); the next write then reports the error,
    which we let propagate.
    """
    view = memoryview(data)
    while view:
        written = layer.pwrite(fd, view, offset)
        if written <= 0:
            # POSIX allows 0 only for a 0-byte request; treat it as an I/O error
            # rather than loop forever.
            raise OSError(errno.EIO, "pwrite() took 0 bytes")
        view = view[written:]
        offset += written
