"""The supervisor keeps its secrets to itself: non-dumpable, secrets out of its environment.

::

    project-o run ─── secrets taken from its env ──► pipe ──► heart (--secrets-fd N)
    heart ── on every (re)start: a fresh pipe ─────► supervisor (PROJECT_O_SECRETS_FD=N)
    supervisor: take_secrets()
      ├─ prctl(PR_SET_DUMPABLE, 0)    other processes of the same uid can no longer read
      │                               /proc/<pid>/environ or /mem, nor ptrace it
      ├─ read the pipe, close it      (so no child inherits it)
      ├─ pop SECRET_ENV names from os.environ, and overwrite their values in the
      │  environment block the kernel shows as /proc/<pid>/environ
      └─► Secrets: the token and the LLM settings, held in memory only

Every process the supervisor starts inherits ``os.environ`` (the zygotes
filter it further), so once the secrets are out of it no child can get
them; what agent code needs of the LLM it gets through the supervisor
(:mod:`project_o.supervisor.llm_proxy`), never the key.

The heart (``heart.py``, standard library only by design) keeps a copy of
:data:`SECRET_ENV` and of the pipe's format; ``tests/supervisor/test_hardening.py``
checks the two agree.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
from collections.abc import Mapping, MutableMapping
from typing import Final

from project_o.errors import InvalidArgument

__all__ = [
    "SECRETS_FD_ENV",
    "SECRET_ENV",
    "is_dumpable",
    "make_non_dumpable",
    "read_secrets_fd",
    "secrets_pipe",
    "take_secrets",
]

#: what the supervisor reads secrets from: the API token, the LLM endpoint and
#: key, the vault key (a base URL can carry credentials in its user-info part)
SECRET_ENV: Final = (
    "PROJECT_O_TOKEN",
    "PROJECT_O_LLM_API_KEY",
    "PROJECT_O_LLM_BASE_URL",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "PROJECT_O_VAULT_KEY",
)
#: names the descriptor of the pipe the secrets arrive on
SECRETS_FD_ENV: Final = "PROJECT_O_SECRETS_FD"
#: a secrets message larger than this is refused (a few keys are well under a KiB)
MAX_SECRETS_BYTES: Final = 64 * 1024

_PR_SET_DUMPABLE: Final = 4
_PR_GET_DUMPABLE: Final = 3
# /proc/self/stat fields 50 and 51 (1-based): where the initial environment lies
_ENV_START_FIELD: Final = 50
_ENV_END_FIELD: Final = 51


def make_non_dumpable() -> None:
    """``prctl(PR_SET_DUMPABLE, 0)``: no core dumps, no same-uid ptrace or /proc/<pid>/mem.

    Raises OSError if the kernel refuses. Reset by ``execve``: every program
    that holds secrets calls it for itself.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"prctl(PR_SET_DUMPABLE, 0) failed: {os.strerror(errno)}")


def is_dumpable() -> bool:
    """Whether this process is dumpable (``prctl(PR_GET_DUMPABLE)``)."""
    return bool(ctypes.CDLL(None, use_errno=True).prctl(_PR_GET_DUMPABLE, 0, 0, 0, 0))


def take_secrets(environ: MutableMapping[str, str] | None = None) -> dict[str, str]:
    """Make this process non-dumpable and take every secret it was given.

    Reads the pipe named by :data:`SECRETS_FD_ENV` (if any), then moves the
    :data:`SECRET_ENV` variables out of ``environ`` (default ``os.environ``;
    the process's own environment block is wiped of their values too). A
    variable set in the environment wins over the same name from the pipe.
    """
    make_non_dumpable()
    environ = os.environ if environ is None else environ
    secrets = read_secrets_fd(environ.pop(SECRETS_FD_ENV, None))
    taken = {name: environ.pop(name) for name in SECRET_ENV if name in environ}
    if environ is os.environ and taken:
        _wipe_initial_environment(taken)
    return {**secrets, **taken}


def read_secrets_fd(value: str | None) -> dict[str, str]:
    """The secrets on the pipe whose descriptor is ``value`` (closed afterwards); {} for None."""
    if value is None:
        return {}
    if not value.isdigit():
        raise InvalidArgument(f"{SECRETS_FD_ENV} must be a descriptor number, got {value!r}")
    fd = int(value)
    try:
        raw = _read_all(fd)
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
    return _decode(raw)


def secrets_pipe(secrets: Mapping[str, str]) -> int:
    """A pipe holding ``secrets``; returns its read end (inheritable: pass it on, then close it)."""
    raw = json.dumps(dict(secrets)).encode()
    if len(raw) > MAX_SECRETS_BYTES:
        raise InvalidArgument(f"the secrets take {len(raw)} bytes, over {MAX_SECRETS_BYTES}")
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, raw)  # under the pipe's 64 KiB buffer: never blocks
    finally:
        os.close(write_end)
    os.set_inheritable(read_end, True)
    return read_end


def _read_all(fd: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while chunk := os.read(fd, 4096):
        size += len(chunk)
        if size > MAX_SECRETS_BYTES:
            raise InvalidArgument(f"the secrets pipe holds over {MAX_SECRETS_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _decode(raw: bytes) -> dict[str, str]:
    try:
        secrets = json.loads(raw or b"{}")
    except ValueError as exc:
        raise InvalidArgument(f"the secrets pipe does not hold JSON: {exc}") from None
    if not isinstance(secrets, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in secrets.items()):
        raise InvalidArgument("the secrets pipe must hold a JSON object of strings")
    return secrets


def _wipe_initial_environment(taken: Mapping[str, str]) -> None:
    """Overwrite ``NAME=value`` of each taken variable in the process's initial environment.

    ``/proc/<pid>/environ`` shows the block the kernel copied at exec, not
    ``os.environ``; ``unsetenv`` (what popping from ``os.environ`` does)
    only drops libc's pointer to the string, so the bytes stay readable by
    anyone allowed to read the file. Nothing points at them any more, so
    they are zeroed in place.
    """
    start, end = _environment_block()
    if not start or end <= start:
        return
    block = ctypes.string_at(start, end - start)
    for name in taken:
        for match in re.finditer(rb"(?:^|\0)(" + re.escape(name.encode()) + rb"=[^\0]*)", block):
            ctypes.memset(start + match.start(1), 0, match.end(1) - match.start(1))


def _environment_block() -> tuple[int, int]:
    with open("/proc/self/stat", "rb") as stat:
        text = stat.read()
    # Fields after the command name, which is in parentheses and may hold spaces.
    fields = text[text.rindex(b")") + 2:].split()
    offset = 3  # fields 1 and 2 (pid, comm) precede the slice
    return int(fields[_ENV_START_FIELD - offset]), int(fields[_ENV_END_FIELD - offset])

