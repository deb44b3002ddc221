"""A supervisor that cannot start says why, once, and exits with a status that says which.

OTP tells a child that fails in ``init`` (its start fails, with the reason)
from one that dies while running (restart it). So do we::

    python -m project_o.supervisor
      options ── bad ───────────────────────► exit EXIT_USAGE / EXIT_NO_AGENT
      tree.start(): vault ── fails ─────────► exit EXIT_VAULT_UNAVAILABLE
                    gateway ── fails ───────► exit EXIT_PORT_UNAVAILABLE
                    agent ── fails ─────────► exit EXIT_AGENT_BROKEN
                    anything else ──────────► exit EXIT_START_FAILED
      all up ──► report_ready(): "up" on the heart's pipe
                 from here a death is a crash, and the heart restarts it

The statuses are defined by the heart (stdlib only, it imports nothing of
ours) and are the exit statuses of ``project-o run``.
"""

from __future__ import annotations

import contextlib
import json
import os

from project_o.errors import ProjectOError
from project_o.supervisor.config import STATE_FILE
from project_o.supervisor.heart import (
    EXIT_AGENT_BROKEN,
    EXIT_NO_AGENT,
    EXIT_PORT_UNAVAILABLE,
    EXIT_START_FAILED,
    EXIT_USAGE,
    EXIT_VAULT_UNAVAILABLE,
    READY_FD_ENV,
    READY_LINE,
)

__all__ = [
    "EXIT_AGENT_BROKEN",
    "EXIT_NO_AGENT",
    "EXIT_PORT_UNAVAILABLE",
    "EXIT_START_FAILED",
    "EXIT_USAGE",
    "EXIT_VAULT_UNAVAILABLE",
    "StartupError",
    "claim_ready_fd",
    "report_ready",
    "start_failure",
]

#: which child of the supervisor's tree failed to start -> the exit status that says so
_CHILD_STATUS = {
    "vault": EXIT_VAULT_UNAVAILABLE,
    "gateway": EXIT_PORT_UNAVAILABLE,
    "agent": EXIT_AGENT_BROKEN,
}
#: a child's id -> what a person calls it, where the two differ
_CHILD_NAMES = {"evolution": "evolution control"}


class StartupError(ProjectOError):
    """The supervisor could not start: ``str()`` is the one message, ``exit_code`` the status."""

    def __init__(self, message: str, exit_code: int = EXIT_START_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def start_failure(child_id: str, exc: BaseException) -> StartupError:
    """The :class:`StartupError` for ``exc`` raised while starting the child ``child_id``."""
    if isinstance(exc, StartupError):
        return exc
    status = _CHILD_STATUS.get(child_id, EXIT_START_FAILED)
    message = exc.args[0] if isinstance(exc, ProjectOError) and exc.args else str(exc)
    traceback = getattr(exc, "traceback", None)  # an agent's own import traceback
    if isinstance(traceback, str) and _agent_frames(traceback):
        message = f"{message}\n{_indent(_agent_frames(traceback))}"
    name = _CHILD_NAMES.get(child_id, child_id)
    return StartupError(f"cannot start the {name}: {message}", status)


def vault_holder(vault: os.PathLike[str] | str) -> str:
    """Who seems to hold ``vault`` ("project-o run pid N on port P"), or "" if nobody alive."""
    try:
        with open(os.path.join(vault, STATE_FILE), encoding="utf-8") as file:
            state = json.load(file)
        pid = int(state["pid"])
        os.kill(pid, 0)
    except (OSError, ValueError, KeyError, TypeError):
        return ""
    if pid == os.getpid():
        return ""
    return f"the supervisor pid {pid} serving on port {state.get('port')}"


def claim_ready_fd() -> int | None:
    """Take the heart's ready pipe from the environment (None when run without a heart).

    Called first thing: the descriptor is made non-inheritable and the
    variable removed, so no zygote or instance can hold the pipe open (the
    heart would then never see it close).
    """
    value = os.environ.pop(READY_FD_ENV, None)
    if value is None or not value.isdigit():
        return None
    fd = int(value)
    try:
        os.set_inheritable(fd, False)
    except OSError:
        return None
    return fd


def report_ready(fd: int | None) -> None:
    """Tell the heart the supervisor is up; from now on a death is a crash it restarts."""
    if fd is None:
        return
    with contextlib.suppress(OSError):  # a heart that died meanwhile: we serve unwatched
        os.write(fd, READY_LINE)
    with contextlib.suppress(OSError):
        os.close(fd)


def _agent_frames(traceback: str) -> str:
    """The part of an import traceback that is the agent's, not our loader's."""
    lines = traceback.rstrip().splitlines()
    for n, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith('File "') and not _is_ours(stripped):
            return "\n".join(lines[n:])
    return ""


def _is_ours(frame: str) -> bool:
    return "<frozen " in frame or f"{os.sep}project_o{os.sep}" in frame


def _indent(text: str) -> str:
    return "\n".join(f"    {line}" for line in text.splitlines())
