"""heart: the tiny process that keeps the supervisor alive (Erlang's ``heart``).

``project-o run`` starts the heart; the heart starts the supervisor and
starts it again whenever it dies, ``kill -9`` included::

    heart (this module: stdlib only, no agent code, no web stack; non-dumpable)
      │  spawn CMD in its own process group, env PROJECT_O_HEART_PID=<heart pid>
      │  and PROJECT_O_READY_FD=<the write end of a pipe>, and the secrets (the API
      │  token, the LLM key...) on a pipe of their own, PROJECT_O_SECRETS_FD=<its read end>
      ▼
    supervisor ──writes "up" to the pipe once it serves (then closes it)
      │
      ├─ ends before it said "up": a failed start (OTP: init/1 failed)
      │    first start ..................................► heart exits with its status,
      │                                                    no restart (it said why)
      │    a restart after a crash ......................► counted like a crash (below)
      └─ ends after "up"
           exit code 0 ..................................► heart exits 0
           after a SIGTERM/SIGINT we forwarded ..........► heart exits (0 if it stopped cleanly)
           anything else (crash, kill -9)
             ├─ over the restart intensity ──────────────► heart gives up: message, exit 1
             └─ backoff (0.1 s, doubling to 2 s), spawn again

    VAULT/heart.json  (rewritten atomically on every change)
      {"heart_pid", "supervisor_pid", "restarts", "state", "last_exit", "updated_at"}
      state: starting | running | restarting | stopped | gave_up
      (first written once a supervisor is up: a run that never got up leaves it alone)

Decisions:

* **Imports nothing of ours.** This file uses the standard library only and
  runs as a plain script (:func:`heart_command` builds ``python -I
  heart.py ... -- CMD``), so no bug or heavy import anywhere in
  ``project_o`` can keep the heart from starting. (``python -m
  project_o.supervisor.heart`` works too, but imports the package first.)
  That is why it keeps its own few lines of restart-window arithmetic
  rather than importing the tree's ``RestartIntensity``.
* **The supervisor does not die with its heart.** No ``PR_SET_PDEATHSIG``
  on the supervisor: if the heart is ``kill -9``'d, the orphaned supervisor
  keeps serving (promise 1 is about the agent staying up, and a dead
  watchdog is no reason to take the service down). It is only unwatched,
  which it can tell: ``os.getppid()`` is no longer ``PROJECT_O_HEART_PID``.
* **Own process group.** The supervisor runs in a process group of its
  own, so a Ctrl-C at the terminal reaches the heart only and is forwarded
  exactly once, and stdin is ``/dev/null`` so a background supervisor can
  never be stopped by the terminal (SIGTTIN) and look like a hang.
* **Stopping.** SIGTERM and SIGINT are forwarded to the supervisor (every
  time, so a second Ctrl-C is a second request); the heart then waits for
  it and does not restart it. If it never ends, kill it by the pid in the
  status file.
* **A failed start is reported, not restarted.** A supervisor that cannot
  start (a typo in the agent path, an agent that does not import, a vault
  another ``project-o run`` holds, a port in use) prints one message and
  exits with a status that says which (see ``supervisor/startup.py``);
  restarting it would print the same error again and again. Only the
  very first start ends the heart this way: after a crash, a restart that
  fails to start counts against the restart intensity like any crash.
* **Secrets never in an environment.** The heart takes them from
  ``--secrets-fd`` (``project-o run`` passes them so) and out of its own
  environment, makes itself non-dumpable (no core, no same-uid ptrace or
  ``/proc/<pid>/mem`` / ``environ`` reads), and hands them to each
  supervisor it starts on a fresh pipe, never in its environment: nothing
  the supervisor starts can inherit them (``supervisor/hardening.py``).
* **Giving up.** More than ``max_restarts`` crashes within ``max_seconds``
  and the heart stops trying: a supervisor that dies that often has a
  problem a restart will not fix (bad config, broken vault), and a crash
  loop would only hide it.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

__all__ = [
    "EXIT_AGENT_BROKEN",
    "EXIT_GAVE_UP",
    "EXIT_NO_AGENT",
    "EXIT_PORT_UNAVAILABLE",
    "EXIT_START_FAILED",
    "EXIT_USAGE",
    "EXIT_VAULT_UNAVAILABLE",
    "HEART_MAX_RESTARTS",
    "HEART_MAX_SECONDS",
    "HEART_PID_ENV",
    "HEART_SCRIPT",
    "MAX_SECRETS_BYTES",
    "READY_FD_ENV",
    "SECRETS_FD_ENV",
    "SECRET_ENV",
    "heart_command",
    "main",
    "make_non_dumpable",
    "read_secrets",
    "read_status",
    "run_heart",
    "secrets_pipe",
    "take_secrets",
]

#: The supervisor finds its heart's pid here.
HEART_PID_ENV = "PROJECT_O_HEART_PID"

#: The supervisor writes READY_LINE to this descriptor once it serves.
READY_FD_ENV = "PROJECT_O_READY_FD"
READY_LINE = b"up\n"

#: The supervisor reads its secrets from the pipe this descriptor names.
SECRETS_FD_ENV = "PROJECT_O_SECRETS_FD"
#: Variables that hold secrets, kept out of every environment: the API token,
#: the LLM endpoint and key, the vault key (a base URL can carry credentials in
#: its user-info part). Defined here, where the stdlib-only heart can use them;
#: ``supervisor/hardening.py`` imports them, as ``startup.py`` does the exit codes.
SECRET_ENV = (
    "PROJECT_O_TOKEN",
    "PROJECT_O_LLM_API_KEY",
    "PROJECT_O_LLM_BASE_URL",
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "PROJECT_O_VAULT_KEY",
)
#: A secrets message larger than this is refused (a few keys are well under a KiB;
#: the pipe's buffer holds 64 KiB, so writing one never blocks).
MAX_SECRETS_BYTES = 64 * 1024
_PR_SET_DUMPABLE = 4

#: Run this file with the interpreter to get a heart that imports nothing of ours.
HEART_SCRIPT = Path(__file__).resolve()

#: Five crashes in a minute. A supervisor start is heavy (imports, vault
#: recovery, zygotes), so five quick deaths in a row mean a fault that a
#: restart will not cure; a crash now and then is restarted forever.
HEART_MAX_RESTARTS = 5
HEART_MAX_SECONDS = 60.0

#: First restart after 0.1 s (the service should be back at once), doubling
#: with each crash inside the intensity window, at most 2 s.
BACKOFF_INITIAL_S = 0.1
BACKOFF_MAX_S = 2.0

#: How often a backoff sleep looks for a stop request.
_STOP_POLL_S = 0.05

#: Exit statuses of the heart, hence of ``project-o run`` (sysexits.h where one fits).
#: The supervisor exits with the start-failure ones before it is up; the
#: heart passes them on and does not restart it.
EXIT_GAVE_UP = 1  # too many crashes after the supervisor was up, or CMD cannot be run
EXIT_USAGE = 2  # bad options (argparse's status)
EXIT_AGENT_BROKEN = 65  # the agent does not load and there is no good version to fall back to
EXIT_NO_AGENT = 66  # the agent file or package does not exist
EXIT_PORT_UNAVAILABLE = 69  # the gateway cannot listen (port in use, bad host)
EXIT_START_FAILED = 71  # the supervisor failed to start for another reason
EXIT_VAULT_UNAVAILABLE = 75  # the vault cannot be opened (another supervisor holds it)
#: statuses a supervisor exits with after printing why it could not start
START_FAILURES = frozenset({
    EXIT_USAGE, EXIT_AGENT_BROKEN, EXIT_NO_AGENT, EXIT_PORT_UNAVAILABLE, EXIT_START_FAILED,
    EXIT_VAULT_UNAVAILABLE,
})

_FORWARDED = (signal.SIGTERM, signal.SIGINT)


def heart_command(
    cmd: Sequence[str],
    *,
    pidfile: Path | None = None,
    max_restarts: int = HEART_MAX_RESTARTS,
    max_seconds: float = HEART_MAX_SECONDS,
    python: str = sys.executable,
    secrets_fd: int | None = None,
) -> list[str]:
    """The argv that runs a heart around ``cmd`` (for ``project-o run`` to spawn or exec).

    ``-I`` keeps the heart's interpreter off PYTHONPATH, user site-packages
    and the script's own directory (whose ``spec.py``, ``tree.py``... must
    not shadow anything); ``cmd`` still gets the caller's environment, less
    the secrets, which the heart reads from ``secrets_fd`` when given.
    """
    argv = [python, "-I", str(HEART_SCRIPT)]
    if secrets_fd is not None:
        argv += ["--secrets-fd", str(secrets_fd)]
    if pidfile is not None:
        argv += ["--pidfile", str(pidfile)]
    argv += ["--max-restarts", str(max_restarts), "--max-seconds", str(max_seconds)]
    return [*argv, "--", *cmd]


def run_heart(
    cmd: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    pidfile: Path | None = None,
    max_restarts: int = HEART_MAX_RESTARTS,
    max_seconds: float = HEART_MAX_SECONDS,
    backoff_initial: float = BACKOFF_INITIAL_S,
    backoff_max: float = BACKOFF_MAX_S,
    clock: Callable[[], float] = time.monotonic,
    out: TextIO | None = None,
    secrets: Mapping[str, str] | None = None,
) -> int:
    """Run ``cmd`` as the supervisor and keep it alive; return the heart's exit status.

    ``secrets`` reach each supervisor on a pipe (``PROJECT_O_SECRETS_FD``),
    never in its environment.

    ``pidfile`` receives the heart's status as JSON (the supervisor's pid,
    restarts, state; see the module docstring), rewritten atomically.
    Must be called from the main thread (it installs SIGTERM/SIGINT handlers,
    restored on return). Returns 0 when the supervisor exits 0 or stops
    cleanly after a forwarded signal; the supervisor's own status when the
    first one ends before it said it was up (a failed start, not
    restarted); :data:`EXIT_GAVE_UP` after too many crashes or when ``cmd``
    cannot be run at all.
    """
    heart = _Heart(
        list(cmd),
        dict(os.environ if env is None else env),
        pidfile,
        _CrashWindow(max_restarts, max_seconds, clock),
        (backoff_initial, backoff_max),
        out if out is not None else sys.stderr,
        dict(secrets or {}),
    )
    previous = {signum: signal.signal(signum, heart.on_signal) for signum in _FORWARDED}
    try:
        return heart.run()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


class _Heart:
    """The heart's state: the current supervisor, restarts, a pending stop."""

    def __init__(
        self,
        cmd: list[str],
        env: dict[str, str],
        pidfile: Path | None,
        intensity: _CrashWindow,
        backoff: tuple[float, float],
        out: TextIO,
        secrets: dict[str, str],
    ) -> None:
        self.cmd = cmd
        self.env = {name: value for name, value in env.items() if name not in SECRET_ENV}
        self.secrets = secrets
        self.pidfile = pidfile
        self.intensity = intensity
        self.backoff = backoff
        self.out = out
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self.stop_signal: int | None = None
        self.last_exit: str | None = None
        #: whether a supervisor ever said it was up: until then a death is a failed start
        self.was_up = False

    def run(self) -> int:
        while self.stop_signal is None:
            try:
                returncode = self._run_once()
            except OSError as exc:
                return self._give_up(f"cannot start the supervisor {self.cmd!r}: {exc}")
            if returncode == 0:
                return self._stopped("the supervisor exited cleanly (exit code 0)", 0)
            if self.stop_signal is not None:
                return self._stopped_on_request(returncode)
            if not self.was_up:
                return self._failed_to_start(returncode)
            if not self.intensity.record():
                return self._give_up(
                    f"the supervisor died {self.intensity.recent()} times within "
                    f"{self.intensity.max_seconds:g} s (last: {self.last_exit})"
                )
            self._write_status("restarting")
            self._sleep(self._backoff_s())
            if self.stop_signal is None:
                self.restarts += 1
        return self._stopped("stopped on request while waiting to restart the supervisor", 0)

    def _run_once(self) -> int:
        read_end, write_end = os.pipe()
        env = {**self.env, HEART_PID_ENV: str(os.getpid()), READY_FD_ENV: str(write_end)}
        secrets_fd = secrets_pipe(self.secrets) if self.secrets else None
        if secrets_fd is not None:
            env[SECRETS_FD_ENV] = str(secrets_fd)
        try:
            # process_group=0: Ctrl-C reaches us only; we forward it once.
            self.process = subprocess.Popen(
                self.cmd, env=env, stdin=subprocess.DEVNULL, process_group=0,
                pass_fds=(write_end,) if secrets_fd is None else (write_end, secrets_fd),
            )
        except BaseException:
            os.close(read_end)
            raise
        finally:
            os.close(write_end)  # from now on only the supervisor holds it: EOF when it dies
            if secrets_fd is not None:
                os.close(secrets_fd)
        if self.stop_signal is not None:  # the signal came while we were forking
            self.process.send_signal(self.stop_signal)
        self._write_status("starting")
        if _await_ready(read_end):
            self.was_up = True
            self._say(f"supervisor pid {self.process.pid} is up (restarts: {self.restarts})")
            self._write_status("running")
        returncode = self.process.wait()  # EINTR is retried; signals are handled meanwhile
        self.last_exit = _describe(returncode)
        if self.was_up:
            self._say(f"supervisor pid {self.process.pid} {self.last_exit}")
        return returncode

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        """SIGTERM/SIGINT: remember the stop request and pass it on."""
        self.stop_signal = signum
        process = self.process
        if process is not None:
            try:
                process.send_signal(signum)  # a no-op once it has been reaped
            except ProcessLookupError:
                pass

    def _stopped_on_request(self, returncode: int) -> int:
        assert self.stop_signal is not None
        clean = returncode == -self.stop_signal  # died of the very signal we forwarded
        status = 0 if clean else _shell_status(returncode)
        return self._stopped(f"the supervisor stopped on request ({self.last_exit})", status)

    def _stopped(self, why: str, status: int) -> int:
        self._say(f"{why}; heart exits {status}")
        self._write_status("stopped")
        return status

    def _failed_to_start(self, returncode: int) -> int:
        """The first supervisor ended before it was up: report, do not restart."""
        status = _shell_status(returncode)
        if status not in START_FAILURES:  # it may not have said why: say what we know
            self._say(f"the supervisor {self.last_exit} while starting; not restarting it")
        return status

    def _give_up(self, why: str) -> int:
        self._say(
            f"{why}; giving up. Look at the supervisor's output above for the cause; "
            f"the limit is {self.intensity.max_restarts} restarts in "
            f"{self.intensity.max_seconds:g} s (--max-restarts, --max-seconds)."
        )
        self.last_exit = self.last_exit or why
        self._write_status("gave_up")
        return EXIT_GAVE_UP

    def _backoff_s(self) -> float:
        initial, ceiling = self.backoff
        return float(min(ceiling, initial * 2 ** max(0, self.intensity.recent() - 1)))

    def _sleep(self, seconds: float) -> None:
        # Short naps: a stop request must not wait out a whole backoff.
        deadline = time.monotonic() + seconds
        while self.stop_signal is None and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, _STOP_POLL_S))

    def _say(self, line: str) -> None:
        print(f"heart[{os.getpid()}]: {line}", file=self.out, flush=True)

    def _write_status(self, state: str) -> None:
        if self.pidfile is None or not self.was_up:
            # Until a supervisor is up the file is not ours to write: a second `project-o
            # run` on a vault that one already serves must leave that one's status alone.
            return
        running = self.process is not None and self.process.returncode is None
        status = {
            "heart_pid": os.getpid(),
            "supervisor_pid": self.process.pid if running and self.process else None,
            "restarts": self.restarts,
            "state": state,
            "last_exit": self.last_exit,
            "updated_at": time.time(),
        }
        try:
            _write_atomically(self.pidfile, json.dumps(status) + "\n")
        except OSError as exc:
            # The status file is a report, not state: the heart's job is to
            # keep the supervisor alive, so a full disk must not stop it.
            self._say(f"cannot write {self.pidfile}: {exc}")


class _CrashWindow:
    """Crash times inside the last ``max_seconds``; too many means give up."""

    def __init__(self, max_restarts: int, max_seconds: float, clock: Callable[[], float]) -> None:
        if max_restarts < 0 or not max_seconds > 0:
            raise ValueError(
                f"expected max_restarts >= 0 and max_seconds > 0, got {max_restarts} "
                f"and {max_seconds}"
            )
        self.max_restarts = max_restarts
        self.max_seconds = max_seconds
        self._clock = clock
        self._times: collections.deque[float] = collections.deque()

    def record(self) -> bool:
        """Count one crash now; False when it is one too many for the window."""
        self._times.append(self._clock())
        return self.recent() <= self.max_restarts

    def recent(self) -> int:
        """Crashes inside the window (one exactly max_seconds old still counts)."""
        horizon = self._clock() - self.max_seconds
        while self._times and self._times[0] < horizon:
            self._times.popleft()
        return len(self._times)


def _write_atomically(path: Path, text: str) -> None:
    """Temp file, fsync, rename, fsync the directory: readers see old or new, never half."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # makes the rename itself durable
    finally:
        os.close(dir_fd)


def make_non_dumpable() -> None:
    """``prctl(PR_SET_DUMPABLE, 0)``: no core dumps, no same-uid ptrace or /proc/<pid>/mem.

    Raises OSError if the kernel refuses. Reset by ``execve``: every program
    that holds secrets calls it for itself.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"prctl(PR_SET_DUMPABLE, 0) failed: {os.strerror(errno)}")


def secrets_pipe(secrets: Mapping[str, str]) -> int:
    """A pipe holding ``secrets`` as JSON; its read end, inheritable (the write end is closed).

    ValueError if they take over :data:`MAX_SECRETS_BYTES` (the write would block).
    """
    raw = json.dumps(dict(secrets)).encode()
    if len(raw) > MAX_SECRETS_BYTES:
        raise ValueError(f"the secrets take {len(raw)} bytes, over {MAX_SECRETS_BYTES}")
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, raw)  # within the pipe's buffer: never blocks
    finally:
        os.close(write_end)
    os.set_inheritable(read_end, True)
    return read_end


def read_secrets(fd: int) -> dict[str, str]:
    """The secrets :func:`secrets_pipe` wrote on ``fd`` (closed afterwards).

    ValueError if it cannot be read, or holds more than
    :data:`MAX_SECRETS_BYTES` or anything but a JSON object of strings.
    """
    chunks: list[bytes] = []
    size = 0
    try:
        while chunk := os.read(fd, 4096):
            size += len(chunk)
            if size > MAX_SECRETS_BYTES:
                raise ValueError(f"the secrets pipe holds over {MAX_SECRETS_BYTES} bytes")
            chunks.append(chunk)
    except OSError as exc:  # not an open descriptor, or not one to read
        raise ValueError(f"cannot read the secrets pipe (descriptor {fd}): "
                         f"{exc.strerror}") from None
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
    try:
        secrets = json.loads(b"".join(chunks) or b"{}")
    except ValueError as exc:
        raise ValueError(f"the secrets pipe does not hold JSON: {exc}") from None
    if not isinstance(secrets, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in secrets.items()):
        raise ValueError("the secrets pipe must hold a JSON object of strings")
    return secrets


def take_secrets(secrets_fd: int | None) -> dict[str, str]:
    """Become non-dumpable; the secrets on ``secrets_fd`` (closed) and in ``os.environ`` (removed).

    Non-dumpable: other processes of the same uid can no longer read our
    memory or ``/proc/<pid>/environ``, nor ptrace us (``prctl(2)``). A
    variable set in the environment wins over the same name from the pipe.
    """
    make_non_dumpable()
    secrets = read_secrets(secrets_fd) if secrets_fd is not None else {}
    for name in SECRET_ENV:
        with contextlib.suppress(KeyError):
            secrets[name] = os.environ.pop(name)
    return secrets


def _await_ready(read_end: int) -> bool:
    """Read the pipe until the supervisor says it is up (True) or it closes (False)."""
    received = b""
    try:
        while READY_LINE not in received:
            chunk = os.read(read_end, 64)  # EINTR is retried; signal handlers run meanwhile
            if not chunk:
                return False
            received += chunk
        return True
    finally:
        os.close(read_end)


def read_status(path: Path) -> dict[str, Any]:
    """The heart's latest status (see the module docstring for the keys)."""
    with open(path, encoding="utf-8") as file:
        status: dict[str, Any] = json.load(file)
    return status


def _describe(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with exit code {returncode}"


def _shell_status(returncode: int) -> int:
    """A child's status as a shell would report it (128 + signal when killed)."""
    return 128 - returncode if returncode < 0 else returncode


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="heart",
        description="Start CMD (the supervisor) and restart it whenever it dies.",
    )
    parser.add_argument(
        "--pidfile",
        type=Path,
        help="write the heart's status (JSON: supervisor pid, restarts, state) here",
    )
    parser.add_argument(
        "--max-restarts",
        type=int,
        default=HEART_MAX_RESTARTS,
        help="give up after more than this many crashes ... (default %(default)s)",
    )
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=HEART_MAX_SECONDS,
        help="... within this many seconds (default %(default)s)",
    )
    parser.add_argument(
        "--backoff",
        type=float,
        default=BACKOFF_INITIAL_S,
        help="first restart delay in seconds, doubling (default %(default)s)",
    )
    parser.add_argument(
        "--secrets-fd",
        type=int,
        default=None,
        help="read the secrets (a JSON object) from this descriptor, then close it",
    )
    parser.add_argument(
        "command",
        nargs=argparse.REMAINDER,
        metavar="-- CMD ...",
        help="the supervisor command line",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry: ``python heart.py [options] -- CMD ...``; returns the exit status."""
    os.umask(os.umask(0o077) | 0o077)  # the heart's files, and its supervisors', are private
    parser = _parser()
    args = parser.parse_args(argv)
    if args.max_restarts < 0 or not args.max_seconds > 0 or args.backoff < 0:
        parser.error("expected --max-restarts >= 0, --max-seconds > 0 and --backoff >= 0")
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.print_usage(sys.stderr)
        print("heart: expected the supervisor command after --", file=sys.stderr)
        return EXIT_USAGE
    try:
        secrets = take_secrets(args.secrets_fd)
    except (ValueError, OSError) as exc:
        print(f"heart: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return run_heart(
        command,
        secrets=secrets,
        pidfile=args.pidfile,
        max_restarts=args.max_restarts,
        max_seconds=args.max_seconds,
        backoff_initial=args.backoff,
    )


if __name__ == "__main__":
    sys.exit(main())
