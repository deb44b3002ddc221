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
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Final

__all__ = ["SEALS", "sealed_copy"]

#: no write, no resize, and the seals themselves are final
SEALS: Final = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE


def sealed_copy(path: Path) -> int:
    """A sealed memfd holding the bytes of ``path``, positioned at 0; the caller closes it.

    Raises OSError (the file is gone, memory is short).
    """
    fd = os.memfd_create(f"project-o:{path.name}", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        with open(path, "rb", buffering=0) as source:
            size = os.fstat(source.fileno()).st_size
            copied = 0
            while copied < size:  # sendfile may copy less than asked
                sent = os.sendfile(fd, source.fileno(), copied, size - copied)
                if sent == 0:
                    break  # the file shrank under us: the checkpoint check will say so
                copied += sent
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, SEALS)
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd
