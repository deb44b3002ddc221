"""Compiling C source into a shared library, in a child process with limits.

::

    compile_shared(source, directory, limits)
        directory/NAME.c  ◄─ source
        cc -shared -fPIC -O2 ... -o directory/NAME.so directory/NAME.c
           │  own session (killpg takes cc1, as, ld with it); environment: PATH, LANG=C
           │  rlimits: address space, CPU seconds, file size (the library and the log),
           │           no core files
           │  stdout+stderr ─► directory/compiler.log (bounded by the file-size limit;
           │                   at most limits.max_log_chars of it are read back)
           └► wall-clock timeout, or an exception in the caller (an evaluator's
              alarm): the whole process group is killed
        ─► directory/NAME.so, or NativeBuildError(reason, log)

A caller killed outright (SIGKILL) cannot stop its compiler; that one ends
at its own CPU limit (the timeout, plus a second).

The compiler runs as a child of whoever calls this: a candidate's zygote or
an evaluator child, which are themselves sandboxed; the supervisor never
calls it. Flags a candidate may add are limited to :data:`ALLOWED_FLAGS`
(optimisation and defines): nothing that loads plugins, runs other programs
or reads files by name.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import signal
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from project_o.errors import NativeBuildError

__all__ = ["ALLOWED_FLAGS", "BASE_FLAGS", "CompileLimits", "compile_shared", "find_compiler"]

#: always passed: a position-independent shared library, hardened so that a
#: stack overrun aborts (SIGABRT) instead of silently going on
BASE_FLAGS: Final = ("-shared", "-fPIC", "-std=gnu11", "-O2", "-fstack-protector-strong",
                     "-D_FORTIFY_SOURCE=2", "-fmax-errors=20", "-Wl,-z,now")
#: the extra flags a candidate may ask for (full matches)
ALLOWED_FLAGS: Final = re.compile(
    r"-O[0-3s]|-march=native|-mtune=native|-ffast-math|-funroll-loops|-fno-math-errno"
    r"|-D[A-Za-z_][A-Za-z0-9_]*(=[A-Za-z0-9_.+-]*)?|-W[a-z-]+"
)
#: a module name becomes a file name: keep it plain
_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


@dataclass(frozen=True)
class CompileLimits:
    """What one compilation may use."""

    #: wall-clock seconds before the compiler's process group is killed
    timeout_s: float = 30.0
    #: address space of the compiler and its children (cc1 needs a few hundred MB at most)
    memory_bytes: int = 1 << 30
    #: largest file the compiler may write: the library, and its own output
    file_bytes: int = 64 << 20
    #: compiler output kept in an error
    max_log_chars: int = 8000


def find_compiler() -> str:
    """The C compiler: ``$CC`` if set and found, else ``cc`` or ``gcc`` on PATH."""
    for name in (os.environ.get("CC"), "cc", "gcc"):
        if name and (found := shutil.which(name)):
            return found
    raise NativeBuildError("no C compiler found (set CC or install gcc)")


def compile_shared(source: str, directory: Path, *, name: str = "native",
                   flags: Sequence[str] = (), limits: CompileLimits | None = None) -> Path:
    """Compile ``source`` into ``directory/NAME.so``; the path, or :class:`NativeBuildError`."""
    limits = limits or CompileLimits()
    _check(name, flags)
    c_file, library, log = directory / f"{name}.c", directory / f"{name}.so", directory / "log"
    c_file.write_text(source)
    # Relative names (cwd=directory): diagnostics say "NAME.c:3:", not a temporary path.
    command = [find_compiler(), *BASE_FLAGS, *flags, "-o", library.name, c_file.name, "-lm"]
    with open(log, "wb") as out:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            cwd=directory, env=_environment(), start_new_session=True,
            preexec_fn=_limiter(limits),  # noqa: PLW1509 - only setrlimit calls, no imports
        )
        try:
            status = process.wait(timeout=limits.timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            raise NativeBuildError(f"the C compiler ran past its {limits.timeout_s:g} s",
                                   _read(log, limits)) from None
        except BaseException:
            # An evaluator's alarm (or ^C) interrupted the wait: the compiler runs in a
            # session of its own, so nobody else would stop it.
            _kill_group(process)
            raise
    if status != 0 or not library.is_file():
        raise NativeBuildError(f"{name}.c did not compile ({_describe(status)})",
                               _read(log, limits))
    return library


def _check(name: str, flags: Sequence[str]) -> None:
    if not _NAME.fullmatch(name):
        raise NativeBuildError(f"module name {name!r} must be a C identifier of 1-64 characters")
    refused = [flag for flag in flags if not ALLOWED_FLAGS.fullmatch(flag)]
    if refused:
        raise NativeBuildError(f"compiler flags not allowed: {refused}; allowed: -O0..-O3, -Os, "
                               "-march/-mtune=native, -ffast-math, -funroll-loops, "
                               "-fno-math-errno, -DNAME[=VALUE], -Wwarning")


def _environment() -> dict[str, str]:
    # The compiler needs PATH to find cc1, as and ld; nothing else of ours is its business.
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C", "LC_ALL": "C"}


def _limiter(limits: CompileLimits) -> Callable[[], None]:
    def apply() -> None:  # runs in the child between fork and exec
        for which, value in ((resource.RLIMIT_AS, limits.memory_bytes),
                             (resource.RLIMIT_CPU, max(1, int(limits.timeout_s) + 1)),
                             (resource.RLIMIT_FSIZE, limits.file_bytes),
                             (resource.RLIMIT_CORE, 0)):
            _, hard = resource.getrlimit(which)
            if hard != resource.RLIM_INFINITY:
                value = min(value, hard)  # limits only go down
            resource.setrlimit(which, (value, value))
    return apply


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def _describe(status: int) -> str:
    if status < 0:
        name = signal.Signals(-status).name
        hint = {"SIGXCPU": "CPU limit", "SIGXFSZ": "file-size limit",
                "SIGKILL": "killed"}.get(name, "crashed")
        return f"compiler {hint}: {name}"
    return f"exit status {status}"


def _read(log: Path, limits: CompileLimits) -> str:
    try:
        with open(log, "rb") as handle:
            data = handle.read(limits.max_log_chars + 1)
    except OSError:
        return ""
    text = data.decode("utf-8", "replace")
    if len(text) > limits.max_log_chars:
        text = text[: limits.max_log_chars] + "\n[compiler output truncated]"
    return text
