"""The heart with a real (fake) supervisor process: kill -9, clean exit, signals, crash loops.

The "supervisor" is a small script that installs its SIGTERM/SIGINT
handlers, then appends "<pid> <PROJECT_O_HEART_PID>" to a log and sleeps
(or exits at once, in the exit modes). The heart runs in a real process,
as a plain script (``python heart.py``, how it is meant to run) or with
``python -m``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from project_o.supervisor.heart import (
    EXIT_GAVE_UP,
    EXIT_PORT_UNAVAILABLE,
    HEART_SCRIPT,
    heart_command,
    main,
    read_status,
    run_heart,
)
from tests.processes import running

#: Deadlock guard for every wait, not a speed limit.
GUARD_S = 30.0

FAKE_SUPERVISOR = """
import os, signal, sys, time
log, mode = sys.argv[1], sys.argv[2]

def on_signal(signum, frame):
    with open(log, "a") as f:
        f.write(f"stop {os.getpid()} {signum}\\n")
    sys.exit(0)

signal.signal(signal.SIGTERM, on_signal)
signal.signal(signal.SIGINT, on_signal)
first = not os.path.exists(log)
with open(log, "a") as f:  # only now: a signal from here on is handled
    f.write(f"{os.getpid()} {os.environ.get('PROJECT_O_HEART_PID')}\\n")
if mode == "fail_start":  # says why, exits with a start-failure status, never up
    print("fake: cannot listen: the port is taken", file=sys.stderr)
    sys.exit(69)
if mode == "die_starting":
    os.kill(os.getpid(), signal.SIGKILL)
if mode == "crash_then_fail_start" and not first:
    sys.exit(65)
ready = int(os.environ["PROJECT_O_READY_FD"])
os.write(ready, b"up\\n")
os.close(ready)
if mode == "exit0":
    sys.exit(0)
if mode in ("crash", "crash_then_fail_start"):
    sys.exit(3)
while True:
    time.sleep(1)
"""


class Heart:
    """A heart process around the fake supervisor, with its log and status file."""

    def __init__(self, tmp: Path, mode: str, *options: str, as_module: bool = False) -> None:
        self.log = tmp / "supervisor.log"
        self.status_path = tmp / "heart.json"
        self.stderr_path = tmp / "heart.stderr"
        script = tmp / "fake_supervisor.py"
        script.write_text(FAKE_SUPERVISOR)
        supervisor = [sys.executable, str(script), str(self.log), mode]
        argv = heart_command(supervisor, pidfile=self.status_path)
        if as_module:
            argv[1:3] = ["-m", "project_o.supervisor.heart"]
        argv[-len(supervisor) - 1 : -len(supervisor) - 1] = options  # later options win
        with open(self.stderr_path, "w") as stderr:  # a file: nobody has to drain a pipe
            self.process = subprocess.Popen(argv, stderr=stderr)

    def starts(self) -> list[tuple[int, int]]:
        """(supervisor pid, heart pid it was given) for each start, in order."""
        lines = self.log.read_text().splitlines() if self.log.exists() else []
        return [(int(a), int(b)) for a, b in (line.split() for line in lines if line[0].isdigit())]

    def stops(self) -> list[str]:
        return [line for line in self.log.read_text().splitlines() if line.startswith("stop")]

    def status(self) -> dict[str, Any]:
        try:
            return read_status(self.status_path)
        except (OSError, ValueError):
            return {}

    def wait(self) -> int:
        return self.process.wait(timeout=GUARD_S)

    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def cleanup(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for pid, _ in self.starts():
            _kill_if_running(pid)


def _kill_if_running(pid: int) -> None:
    if running(pid):
        os.kill(pid, signal.SIGKILL)


def until(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + GUARD_S
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for: {what}")
        time.sleep(0.01)


@pytest.fixture
def heart_factory(tmp_path: Path) -> Iterator[Callable[..., Heart]]:
    hearts: list[Heart] = []

    def make(mode: str, *options: str, as_module: bool = False) -> Heart:
        hearts.append(Heart(tmp_path, mode, *options, as_module=as_module))
        return hearts[-1]

    yield make
    for heart in hearts:
        heart.cleanup()


def test_a_kill_9_supervisor_is_restarted_with_a_new_pid(
    heart_factory: Callable[..., Heart],
    tmp_path: Path,
) -> None:
    heart = heart_factory("serve")
    until(lambda: len(heart.starts()) == 1, "the first supervisor")
    first, given_heart_pid = heart.starts()[0]
    assert given_heart_pid == heart.process.pid
    until(lambda: heart.status().get("supervisor_pid") == first, "status names the supervisor")

    os.kill(first, signal.SIGKILL)
    until(lambda: len(heart.starts()) == 2, "a second supervisor")
    second, given_heart_pid = heart.starts()[1]
    assert second != first and given_heart_pid == heart.process.pid
    until(lambda: heart.status().get("supervisor_pid") == second
          and heart.status().get("state") == "running", "status names the new one, up")
    status = heart.status()
    assert status["restarts"] == 1 and status["state"] == "running"
    assert status["last_exit"] == "killed by SIGKILL"
    assert status["heart_pid"] == heart.process.pid
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".heart.json")) == []

    heart.process.send_signal(signal.SIGTERM)
    assert heart.wait() == 0
    assert heart.stops() == [f"stop {second} {signal.SIGTERM}"]
    assert heart.status()["state"] == "stopped"


@pytest.mark.parametrize("as_module", [False, True])
def test_a_clean_exit_ends_the_heart_without_restart(
    heart_factory: Callable[..., Heart],
    as_module: bool,
) -> None:
    heart = heart_factory("exit0", as_module=as_module)
    assert heart.wait() == 0
    assert len(heart.starts()) == 1
    assert heart.status()["state"] == "stopped" and heart.status()["restarts"] == 0
    assert "exited cleanly" in heart.stderr()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_stop_signals_are_forwarded_and_both_exit(
    heart_factory: Callable[..., Heart],
    signum: int,
) -> None:
    heart = heart_factory("serve")
    until(lambda: len(heart.starts()) == 1, "the supervisor")
    supervisor_pid = heart.starts()[0][0]
    heart.process.send_signal(signum)
    assert heart.wait() == 0
    assert heart.stops() == [f"stop {supervisor_pid} {signum}"]  # forwarded exactly once
    assert not running(supervisor_pid)
    assert len(heart.starts()) == 1  # not restarted after a requested stop


def test_a_crash_loop_makes_the_heart_give_up(heart_factory: Callable[..., Heart]) -> None:
    heart = heart_factory(
        "crash", "--max-restarts", "2", "--max-seconds", "600", "--backoff", "0.01"
    )
    assert heart.wait() == EXIT_GAVE_UP
    assert len(heart.starts()) == 3  # the first run and two restarts
    stderr = heart.stderr()
    assert "died 3 times within 600 s (last: exited with exit code 3); giving up" in stderr
    status = heart.status()
    assert status["state"] == "gave_up" and status["restarts"] == 2


def test_a_failed_first_start_is_reported_with_its_status_not_restarted(
    heart_factory: Callable[..., Heart],
) -> None:
    heart = heart_factory("fail_start")
    assert heart.wait() == EXIT_PORT_UNAVAILABLE  # the supervisor's own status, passed on
    assert len(heart.starts()) == 1
    # One message: the supervisor's. The heart adds nothing, since the status says it spoke.
    assert heart.stderr().splitlines() == ["fake: cannot listen: the port is taken"]
    assert heart.status() == {}  # never up: the status file of whoever serves is left alone


def test_a_supervisor_killed_while_starting_is_not_restarted_and_the_heart_says_so(
    heart_factory: Callable[..., Heart],
) -> None:
    heart = heart_factory("die_starting")
    assert heart.wait() == 128 + signal.SIGKILL
    assert len(heart.starts()) == 1
    assert "killed by SIGKILL while starting; not restarting it" in heart.stderr()
    assert heart.status() == {}


def test_a_restart_that_fails_to_start_counts_as_a_crash(
    heart_factory: Callable[..., Heart],
) -> None:
    # Up once, then every restart fails while starting: the intensity decides, as for a crash.
    heart = heart_factory(
        "crash_then_fail_start", "--max-restarts", "2", "--max-seconds", "600", "--backoff",
        "0.01",
    )
    assert heart.wait() == EXIT_GAVE_UP
    assert len(heart.starts()) == 3
    assert "(last: exited with exit code 65); giving up" in heart.stderr()


def test_a_stop_during_the_backoff_ends_the_heart_without_a_restart(
    heart_factory: Callable[..., Heart],
) -> None:
    heart = heart_factory("crash", "--backoff", "600")  # it would wait ten minutes
    until(lambda: heart.status().get("state") == "restarting", "the first crash")
    heart.process.send_signal(signal.SIGTERM)
    assert heart.wait() == 0
    assert len(heart.starts()) == 1
    assert "while waiting to restart" in heart.stderr()
    assert heart.status()["state"] == "stopped"


def test_the_supervisor_outlives_a_killed_heart(heart_factory: Callable[..., Heart]) -> None:
    # Documented choice: an orphaned supervisor keeps serving.
    heart = heart_factory("serve")
    until(lambda: len(heart.starts()) == 1, "the supervisor")
    supervisor_pid = heart.starts()[0][0]
    heart.process.kill()
    heart.process.wait()
    assert running(supervisor_pid)
    assert heart.stops() == []
    os.kill(supervisor_pid, signal.SIGTERM)
    until(lambda: not running(supervisor_pid), "the orphan to stop on SIGTERM")


def test_a_command_that_cannot_start_is_given_up_at_once(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    status_path = tmp_path / "heart.json"
    code = run_heart([str(tmp_path / "no-such-supervisor")], pidfile=status_path)
    assert code == EXIT_GAVE_UP
    assert "cannot start the supervisor" in capsys.readouterr().err
    assert not status_path.exists()  # nothing was ever up: nothing to report there
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored


def test_usage_without_a_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--max-restarts", "2"]) == 2
    assert "expected the supervisor command after --" in capsys.readouterr().err


def test_the_heart_script_imports_nothing_of_ours() -> None:
    # Load heart.py the way `python heart.py` does (minus running main) and
    # look at what came with it.
    code = (
        "import runpy, sys\n"
        f"runpy.run_path({str(HEART_SCRIPT)!r}, run_name='heart')\n"
        "heavy = ('project_o', 'numpy', 'fastapi', 'msgpack', 'zstandard', 'httpx', 'pydantic')\n"
        "print(sorted(m for m in sys.modules if m.startswith(heavy)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-c", code],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "[]"
