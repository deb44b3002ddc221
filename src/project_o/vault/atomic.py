"""Atomic, durable file replacement: a reader sees the old file or the new one.

::

    DIR/.NAME.<pid>.<token>.tmp   ── write all bytes ── fsync(file)
              │
              └─ os.replace ──► DIR/NAME ── fsync(DIR)

Why each step:

* **temp file in the same directory** — ``os.replace`` is only atomic
  within one file system, and a crash mid-write must never leave a
  half-written ``NAME``.
* **fsync the file before the rename** — otherwise the kernel may persist
  the rename before the data, and after a power cut ``NAME`` exists but
  holds zeros or garbage (the classic ext4 delayed-allocation trap).
* **fsync the directory after the rename** — the rename itself lives in
  the directory's metadata; until that is on disk a power cut can bring
  back the old name (or no name at all).
* **an fsync error is never retried** — after a failed fsync the kernel
  may already have dropped the dirty pages and marked them clean, so a
  second fsync can report success for data that is gone. The temp file is
  removed and the error raised; the old ``NAME`` is untouched.

A temp file left behind by a process killed mid-write carries that
process's pid; :func:`remove_stale_temps` deletes such leftovers once
their writer is dead, and never touches a write still in flight.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterable
from pathlib import Path

__all__ = [
    "TEMP_SUFFIX",
    "fsync_directory",
    "is_temp_name",
    "remove_stale_temps",
    "temp_path_for",
    "write_atomic",
]

#: every temp file this module creates ends with this
TEMP_SUFFIX = ".tmp"

#: ``.NAME.<pid>.<16 hex>.tmp`` — the pid says whose write it is
_TEMP_NAME = re.compile(r"^\.(?P<final>.+)\.(?P<pid>\d+)\.[0-9a-f]{16}\.tmp$")

#: bytes of randomness in a temp name, so concurrent writers never collide
_TOKEN_BYTES = 8

#: new files are the owner's alone: a vault holds an agent's memory
_FILE_MODE = 0o600

Buffer = bytes | bytearray | memoryview


def temp_path_for(path: Path) -> Path:
    """A fresh temp path next to ``path``, tagged with this process's pid."""
    token = secrets.token_hex(_TOKEN_BYTES)
    return path.with_name(f".{path.name}.{os.getpid()}.{token}{TEMP_SUFFIX}")


def is_temp_name(name: str) -> bool:
    """True if ``name`` looks like a temp file made by :func:`temp_path_for`."""
    return _TEMP_NAME.match(name) is not None


def write_atomic(path: Path, data: Buffer | Iterable[Buffer]) -> None:
    """Durably replace ``path`` with ``data`` (one buffer or several, written in order).

    On return the new contents and the name are on stable storage. On any
    error the temp file is removed, ``path`` keeps its old contents, and
    the error propagates (an ``OSError`` from fsync is not retried; see the
    module docstring).
    """
    chunks: Iterable[Buffer] = (data,) if isinstance(data, bytes | bytearray | memoryview) else data
    temp = temp_path_for(path)
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, _FILE_MODE)
    try:
        try:
            for chunk in chunks:
                _write_all(fd, chunk)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, path)
    except BaseException:
        _unlink_quietly(temp)
        raise
    fsync_directory(path.parent)


def fsync_directory(directory: Path) -> None:
    """Flush ``directory``'s entries (creations, renames) to stable storage."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_stale_temps(directory: Path) -> list[Path]:
    """Delete temp files in ``directory`` whose writing process is gone.

    Returns the paths removed. Temps of live processes (this one included)
    are in-flight writes and are left alone; if a dead writer's pid has
    been reused the leftover simply waits for a later call.
    """
    removed: list[Path] = []
    for entry in os.scandir(directory):
        match = _TEMP_NAME.match(entry.name)
        if match is None or _pid_alive(int(match["pid"])):
            continue
        if _unlink_quietly(Path(entry.path)):
            removed.append(Path(entry.path))
    return removed


def _write_all(fd: int, chunk: Buffer) -> None:
    # os.write may write less than asked (signals, pipes, some file systems).
    view = memoryview(chunk).cast("B")
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def _unlink_quietly(path: Path) -> bool:
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True
