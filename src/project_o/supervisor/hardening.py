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

The list of secret variables, the pipe's format and ``prctl`` live in the
heart (``heart.py``, standard library only by design, so it can use them
itself); this module takes them from there and adds what only the
supervisor needs: the environment block's wipe and errors of its own kind.
"""

from __future__ import annotations

import ctypes
import os
import re
from collections.abc import Mapping, Sequence
from typing import Final

from project_o.errors import InvalidArgument
from project_o.supervisor import heart
from project_o.supervisor.heart import MAX_SECRETS_BYTES, SECRET_ENV, SECRETS_FD_ENV

__all__ = [
    "MAX_SECRETS_BYTES",
    "SECRETS_FD_ENV",
    "SECRET_ENV",
    "is_dumpable",
    "secrets_pipe",
    "take_secrets",
]

_PR_GET_DUMPABLE: Final = 3
# /proc/self/stat fields 50 and 51 (1-based): where the initial environment lies
_ENV_START_FIELD: Final = 50
_ENV_END_FIELD: Final = 51


def is_dumpable() -> bool:
    """Whether this process is dumpable (``prctl(PR_GET_DUMPABLE)``)."""
    return bool(ctypes.CDLL(None, use_errno=True).prctl(_PR_GET_DUMPABLE, 0, 0, 0, 0))


def take_secrets() -> dict[str, str]:
    """Make this process non-dumpable and take every secret it was given.

    What the heart does for itself (:func:`~project_o.supervisor.heart.take_secrets`:
    the pipe named by :data:`SECRETS_FD_ENV`, then the :data:`SECRET_ENV`
    variables moved out of ``os.environ``, which win over the pipe), and the
    values wiped from the process's own environment block too.
    """
    value = os.environ.pop(SECRETS_FD_ENV, None)
    if value is not None and not value.isdigit():
        raise InvalidArgument(f"{SECRETS_FD_ENV} must be a descriptor number, got {value!r}")
    in_env = [name for name in SECRET_ENV if name in os.environ]
    try:
        secrets = heart.take_secrets(int(value) if value is not None else None)
    except ValueError as exc:  # the pipe's content
        raise InvalidArgument(str(exc)) from None
    if in_env:
        _wipe_initial_environment(in_env)
    return secrets


def secrets_pipe(secrets: Mapping[str, str]) -> int:
    """A pipe holding ``secrets``; returns its read end (inheritable: pass it on, then close it)."""
    try:
        return heart.secrets_pipe(secrets)
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from None


def _wipe_initial_environment(taken: Sequence[str]) -> None:
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

