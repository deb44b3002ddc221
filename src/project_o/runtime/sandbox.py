"""The sandbox an instance enters right after the fork, before any agent code runs.

In the forked child, in this order::

    setsid()                         own session and process group (pgid == pid), so
                                     killpg(pid) also takes whatever it forks
    PR_SET_PDEATHSIG(SIGKILL)        dies with its zygote
    fds: instance socket -> fd 3     fd 0 = /dev/null, 1-2 = the zygote's stdout/stderr,
         closerange(4, ...)          every other inherited descriptor closed
    PR_SET_CHILD_SUBREAPER           its orphaned descendants stay its own, so they die
                                     with it (the zygote kills what reaches it)
    rlimits                          RLIMIT_AS, RLIMIT_CPU, RLIMIT_NOFILE, RLIMIT_FSIZE,
                                     RLIMIT_CORE = 0; soft == hard, so they only go down;
                                     RLIMIT_NPROC (in the zygote's PID namespace: the
                                     tasks there now plus ``pids``)
    its zygote's cgroup              born there; the zygote's parent added its quota
                                     (pids, memory) to the group's limits before the fork
                                     (see project_o.runtime.confine.cgroups)
    private /tmp directory           in the zygote's private /tmp: TMPDIR and the working
                                     directory (where the sandbox made a private /tmp)

What confines all agent code -- identity, namespaces, seccomp, Landlock --
was applied to the zygote before it imported the agent
(:mod:`project_o.runtime.confine`); every child inherits it.

The environment is not touched here: the zygote was started with
:func:`scrubbed_env` by the supervisor and every instance inherits it.

``limits`` in a fork request (docs/design.md, "Wire protocol") is a dict with any of
``memory_bytes``, ``cpu_seconds``, ``open_files``, ``file_size``, ``pids``;
a missing key takes the default below, ``None`` means "no limit".
"""

from __future__ import annotations

import fnmatch
import os
import re
import resource
import signal
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Final

from project_o.errors import InvalidArgument
from project_o.runtime.procctl import set_child_subreaper, set_parent_death_signal

__all__ = [
    "CPU_KILL_GRACE_SECONDS",
    "DEFAULT_CPU_SECONDS",
    "DEFAULT_ENV_ALLOWLIST",
    "DEFAULT_FILE_SIZE",
    "DEFAULT_MEMORY_BYTES",
    "DEFAULT_OPEN_FILES",
    "DEFAULT_PIDS",
    "INSTANCE_FD",
    "NEVER_FORWARDED",
    "Limits",
    "apply_sandbox",
    "cgroup_available",
    "private_tmp_path",
    "scrubbed_env",
    "with_package_path",
]

#: the instance's socket always sits on this descriptor, right after stdio
INSTANCE_FD: Final = 3

#: address space: 1 GiB is room for a Python agent and its data, and stops a
#: runaway allocation long before it hurts the host. It counts everything
#: mapped, the zygote's imports included: raise it for heavy libraries.
DEFAULT_MEMORY_BYTES: Final = 1 << 30
#: CPU seconds over the instance's life: five minutes of pure computation is
#: far beyond a request's deadline; it catches a spinning process nobody killed.
DEFAULT_CPU_SECONDS: Final = 300
#: descriptors: plenty for sockets and files, far below a typical host limit.
DEFAULT_OPEN_FILES: Final = 256
#: largest file the instance may write (RLIMIT_FSIZE).
DEFAULT_FILE_SIZE: Final = 1 << 30
#: processes and threads of the instance (its cgroup's pids.max, and RLIMIT_NPROC on top of
#: what its zygote's PID namespace holds).
DEFAULT_PIDS: Final = 64
#: RLIMIT_CPU sends SIGXCPU at the soft limit and SIGKILL at the hard one;
#: the gap lets a handler of SIGXCPU save its work.
CPU_KILL_GRACE_SECONDS: Final = 5

#: variables copied from the supervisor's environment (fnmatch patterns)
DEFAULT_ENV_ALLOWLIST: Final = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "LANG",
    "LANGUAGE",
    "LC_*",
    "TZ",
    "TMPDIR",
    "TEMP",
    "TMP",
    # How Python finds its packages: the supervisor's own, trusted.
    "PYTHONPATH",
    "VIRTUAL_ENV",
    "PYTHONIOENCODING",
    "PYTHONUNBUFFERED",
    "PYTHONDONTWRITEBYTECODE",
    # TLS trust roots for agents that call remote APIs.
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
)
#: never copied from the environment, even if an allowlist pattern matches
NEVER_FORWARDED: Final = frozenset({"PROJECT_O_TOKEN"})
# Names that look like credentials are not copied by a pattern either; pass
# one explicitly with ``extra`` if an agent really needs it.
_SECRET_NAME: Final = re.compile(
    r"TOKEN|SECRET|PASSW|CREDENTIAL|PRIVATE|API_?KEY|ACCESS_?KEY|AUTH", re.IGNORECASE
)


@dataclass(frozen=True)
class Limits:
    """Resource limits of one instance; ``None`` leaves that resource unlimited."""

    memory_bytes: int | None = DEFAULT_MEMORY_BYTES
    cpu_seconds: int | None = DEFAULT_CPU_SECONDS
    open_files: int | None = DEFAULT_OPEN_FILES
    file_size: int | None = DEFAULT_FILE_SIZE
    pids: int | None = DEFAULT_PIDS

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> Limits:
        """Build from a fork request's ``limits``; unknown keys or bad values raise."""
        values = dict(values or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InvalidArgument(f"unknown limits {unknown}; known limits are {sorted(known)}")
        for name, value in values.items():
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value <= 0
            ):
                raise InvalidArgument(f"limit {name} must be a positive int or None, got {value!r}")
        return cls(**values)

    def to_dict(self) -> dict[str, int | None]:
        """The limits as a fork request carries them."""
        return asdict(self)


def apply_sandbox(
    instance_fd: int, limits: Limits, *, parent_pid: int,
    private_tmp: bool = False, count_tasks: bool = False,
) -> int:
    """Enter the sandbox (in the freshly forked child); return the socket's new fd.

    ``parent_pid`` is the zygote's pid: if it is already gone, the child
    exits instead of running orphaned. ``private_tmp``: make a directory of
    its own in /tmp its TMPDIR and working directory. ``count_tasks``: the
    zygote's PID namespace holds only the sandbox's processes, so
    RLIMIT_NPROC (counted per uid) is what runs there now plus ``pids``.
    """
    os.setsid()
    set_parent_death_signal(signal.SIGKILL, expected_parent=parent_pid)
    set_child_subreaper()
    fd = _isolate_descriptors(instance_fd)
    _apply_rlimits(limits)
    if count_tasks and limits.pids is not None:
        _set(resource.RLIMIT_NPROC, _tasks_here() + limits.pids)
    if private_tmp:
        _enter_private_tmp()
    return fd


def cgroup_available() -> bool:
    """Whether zygotes and their children get cgroups of their own (pids, memory, kill).

    They are made by the process that starts the zygotes; see
    :mod:`project_o.runtime.confine.cgroups`.
    """
    from project_o.runtime.confine import cgroups

    return cgroups.host().available


def _isolate_descriptors(instance_fd: int) -> int:
    if instance_fd != INSTANCE_FD:
        os.dup2(instance_fd, INSTANCE_FD, inheritable=False)
        os.close(instance_fd)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    for fd in (1, 2):  # a zygote started with closed stdio: fill the holes
        try:
            os.fstat(fd)
        except OSError:
            os.dup2(null, fd)
    if null > 2 and null != INSTANCE_FD:
        os.close(null)
    os.closerange(INSTANCE_FD + 1, _highest_open_fd() + 1)
    return INSTANCE_FD


def _tasks_here() -> int:
    """Tasks (threads included) in this PID namespace, as its /proc shows them."""
    count = 0
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                count += len(os.listdir(f"/proc/{name}/task"))
            except OSError:
                continue  # it exited meanwhile
    return count


def private_tmp_path(pid: int) -> str:
    """The directory in the private /tmp of the child whose pid (in the sandbox) is ``pid``."""
    return f"/tmp/child-{pid}"


def _enter_private_tmp() -> None:
    import shutil
    import tempfile

    path = private_tmp_path(os.getpid())
    shutil.rmtree(path, ignore_errors=True)  # a child of the same pid before us
    os.mkdir(path, 0o700)
    os.chdir(path)
    os.environ["TMPDIR"] = path
    tempfile.tempdir = path


def _highest_open_fd() -> int:
    # The exact ceiling, not RLIMIT_NOFILE: a descriptor may sit above a
    # lowered limit, and a huge range is slow where close_range(2) is missing.
    return max(int(name) for name in os.listdir("/proc/self/fd"))


def _apply_rlimits(limits: Limits) -> None:
    _set(resource.RLIMIT_CORE, 0)  # a crashing agent must not fill the disk with cores
    _set(resource.RLIMIT_AS, limits.memory_bytes)
    _set(resource.RLIMIT_NOFILE, limits.open_files)
    _set(resource.RLIMIT_FSIZE, limits.file_size)
    if limits.cpu_seconds is not None:
        _set(resource.RLIMIT_CPU, limits.cpu_seconds, limits.cpu_seconds + CPU_KILL_GRACE_SECONDS)


def _set(which: int, soft: int | None, hard: int | None = None) -> None:
    if soft is None:
        return
    hard = soft if hard is None else hard
    _, current_hard = resource.getrlimit(which)
    if current_hard != resource.RLIM_INFINITY:
        # Without privileges a hard limit can only go down.
        soft, hard = min(soft, current_hard), min(hard, current_hard)
    resource.setrlimit(which, (soft, hard))


def scrubbed_env(
    allow: Iterable[str] = DEFAULT_ENV_ALLOWLIST,
    extra: Mapping[str, str] | None = None,
    *,
    source: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment to start a zygote with.

    Copies from ``source`` (default ``os.environ``) only the variables
    whose names match an ``allow`` pattern and do not look like secrets,
    then adds ``extra`` verbatim (the explicit way to hand an agent e.g. an
    LLM API key). :data:`NEVER_FORWARDED` names are refused even in ``extra``.
    """
    source = os.environ if source is None else source
    patterns = tuple(allow)
    env = {name: value for name, value in source.items() if _allowed(name, patterns)}
    for name, value in (extra or {}).items():
        if name in NEVER_FORWARDED:
            raise InvalidArgument(
                f"{name} is the supervisor's own secret and is never given to agent code"
            )
        if not isinstance(value, str):
            raise InvalidArgument(f"environment value of {name} must be a str, got {value!r}")
        env[name] = value
    return env


def _allowed(name: str, patterns: tuple[str, ...]) -> bool:
    if name in NEVER_FORWARDED or name.startswith("PROJECT_O_") or _SECRET_NAME.search(name):
        return False
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


def with_package_path(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` with this very project_o importable (installed or from a source tree).

    Children we start (zygotes, evaluators) must run the same runtime as
    their parent, whatever the scrubbed environment's PYTHONPATH says.
    """
    import project_o  # here, not at the top: the package imports this module

    root = str(Path(project_o.__file__).resolve().parent.parent)
    result = dict(env)
    parts = [p for p in result.get("PYTHONPATH", "").split(os.pathsep) if p]
    if root not in parts:
        result["PYTHONPATH"] = os.pathsep.join([root, *parts])
    return result
