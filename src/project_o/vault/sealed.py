"""A sealed in-memory copy of a vault file: how a checkpoint reaches an instance.

::

    checkpoint file ──sendfile (in the kernel)──► memfd ──F_ADD_SEALS──► read-only for good
                                                    └─ its descriptor travels over the
                                                       instance's socket (SCM_RIGHTS)

An instance must never hold a path into the vault (the sandbox hides the
vault from agent code altogether), nor a descriptor of a vault file: a
read-only descriptor can be reopened read-write through
``/proc/self/fd/N``. A memfd is a file of its own, and once sealed
against writes, growth and shrinking (and against new seals) nobody --
the supervisor included -- can change its bytes, so one copy can be
handed to any number of instances.

:class:`SealedCopies` keeps the copy of the newest checkpoint, made once
(when the checkpoint is written, or at the first restore from it), so a
restart does not wait for the copy. Each instance gets a descriptor of
its own, opened read-only on the copy: a description shared between
processes would share its file offset too.

    checkpoint written ─► SealedCopies.prepare(info) ─► one memfd (the newest only)
    restore ─► SealedCopies.reader(info) ─► os.open(/proc/self/fd/<memfd>, O_RDONLY)
                                            a fresh description: sent, then closed here
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Final

from project_o.vault.checkpoint import CheckpointInfo

__all__ = ["SEALS", "SealedCopies", "sealed_copy"]

#: no write, no resize, and the seals themselves are final
SEALS: Final = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE

#: makes the bytes of a copy from the checkpoint's path
Image = Callable[[Path], bytes]


def sealed_copy(path: Path, image: Image | None = None) -> int:
    """A sealed memfd holding the bytes of ``path``, positioned at 0; the caller closes it.

    ``image(path)``, if given, makes the bytes instead: for a vault sealed at
    rest, the unsealed checkpoint (:meth:`CheckpointStore.plain_image`), so
    the instance never needs the key. Raises OSError (the file is gone,
    memory is short).
    """
    fd = os.memfd_create(f"project-o:{path.name}", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        if image is not None:
            _write_all(fd, image(path))
        else:
            _copy_file(fd, path)
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, SEALS)
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _copy_file(fd: int, path: Path) -> None:
    with open(path, "rb", buffering=0) as source:
        size = os.fstat(source.fileno()).st_size
        copied = 0
        while copied < size:  # sendfile may copy less than asked
            sent = os.sendfile(fd, source.fileno(), copied, size - copied)
            if sent == 0:
                break  # the file shrank under us: the checkpoint check will say so
            copied += sent


class SealedCopies:
    """The sealed copy of the newest checkpoint, made once; thread-safe (calls block: use a thread)."""

    def __init__(self, image: Image | None = None) -> None:
        """``image``: what each copy holds (see :func:`sealed_copy`); None: the file's bytes."""
        self._image = image
        self._lock = threading.Lock()
        self._id: uuid.UUID | None = None
        self._fd: int | None = None

    def prepare(self, info: CheckpointInfo) -> None:
        """Make the copy of ``info`` now (a newer checkpoint replaces the older copy)."""
        with self._lock:
            self._ensure(info)

    def reader(self, info: CheckpointInfo) -> int:
        """A new read-only descriptor on the copy of ``info`` (made if needed); caller closes it."""
        with self._lock:
            fd = self._ensure(info)
            return os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)

    def close(self) -> None:
        """Drop the copy (instances that hold a descriptor keep theirs)."""
        with self._lock:
            self._drop()

    def _ensure(self, info: CheckpointInfo) -> int:
        if self._fd is None or self._id != info.id:
            fd = sealed_copy(info.path, self._image)
            self._drop()
            self._id, self._fd = info.id, fd
        return self._fd

    def _drop(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
        self._id = self._fd = None
