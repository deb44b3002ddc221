"""The pieces a tree is built from: ExitReason, ChildSpec, RestartIntensity; the tests' process child."""

from __future__ import annotations

import signal
import sys
from typing import Any

import pytest

from project_o import supervisor
from project_o.errors import InvalidArgument
from project_o.supervisor import (
    Child,
    ChildSpec,
    ExitReason,
    RestartIntensity,
    SupervisionTree,
)
from tests.supervisor.process_child import ProcessChild
from tests.supervisor.test_tree import SLEEPER, async_test, python

# -- ExitReason ------------------------------------------------------------------


def test_exit_reason_from_a_return_code() -> None:
    assert ExitReason.from_returncode(0) == ExitReason(True, "exited normally (exit code 0)", 0)
    assert ExitReason.from_returncode(3) == ExitReason(False, "exit code 3", 3)
    assert ExitReason.from_returncode(-9) == ExitReason(False, "killed by SIGKILL", None, 9)
    assert str(ExitReason.from_returncode(-11)) == "killed by SIGSEGV"


def test_exit_reason_from_a_zygote_report() -> None:
    assert ExitReason.from_status(None, 6).detail == "killed by SIGABRT"
    assert ExitReason.from_status(None, 200).detail == "killed by signal 200"
    unknown = ExitReason.from_status(None, None)
    assert not unknown.normal and "not visible" in unknown.detail
    hung = ExitReason.from_status(None, 9, cause="hang: no heartbeat for 5.0 s")
    assert hung.detail == "hang: no heartbeat for 5.0 s (killed by SIGKILL)"


def test_exit_reason_kinds() -> None:
    assert ExitReason.shutdown().normal
    assert not ExitReason.crashed("wait() raised").normal
    assert ExitReason.hang(5).detail == "hang: no heartbeat for 5.0 s"
    assert not ExitReason.hang(5).normal


# -- ChildSpec -------------------------------------------------------------------


async def _never() -> Child:
    raise AssertionError("not started in these tests")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"id": ""}, "non-empty string"),
        ({"restart": "sometimes"}, "restart must be one of"),
        ({"shutdown": -1}, "shutdown must be"),
        ({"shutdown": True}, "shutdown must be"),
        ({"shutdown": "soon"}, "shutdown must be"),
        ({"start": "python"}, "start must be callable"),
    ],
)
def test_child_spec_refuses_bad_fields(fields: dict[str, Any], message: str) -> None:
    spec: dict[str, Any] = {"id": "w", "start": _never, **fields}
    with pytest.raises(InvalidArgument, match=message):
        ChildSpec(**spec)


def test_child_spec_defaults_are_otps() -> None:
    spec = ChildSpec("w", _never)
    assert (spec.restart, spec.shutdown) == ("permanent", 5000)
    assert ChildSpec("w", _never, shutdown="brutal_kill").shutdown == "brutal_kill"
    assert ChildSpec("w", _never, shutdown="infinity").shutdown == "infinity"


# -- RestartIntensity -------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_intensity_refuses_the_restart_that_makes_one_too_many() -> None:
    clock = Clock()
    intensity = RestartIntensity(3, 5.0, clock=clock)
    assert [intensity.record() for _ in range(3)] == [True, True, True]
    assert intensity.record() is False
    assert intensity.recent() == 4


def test_intensity_forgets_restarts_older_than_the_window() -> None:
    clock = Clock()
    intensity = RestartIntensity(2, 5.0, clock=clock)
    assert intensity.record() and intensity.record()
    clock.now += 5.0  # exactly max_seconds later: still inside the window (as in OTP)
    assert intensity.record() is False
    clock.now += 0.001
    assert intensity.recent() == 1
    assert intensity.record() is True


def test_zero_restarts_allowed_refuses_the_first() -> None:
    assert RestartIntensity(0, 1.0, clock=Clock()).record() is False


@pytest.mark.parametrize(("restarts", "seconds"), [(-1, 5.0), (True, 5.0), (3, 0.0), (3, -1.0)])
def test_intensity_refuses_bad_limits(restarts: Any, seconds: float) -> None:
    with pytest.raises(InvalidArgument):
        RestartIntensity(restarts, seconds)


# -- ProcessChild (the tests' process child) --------------------------------------------------------


@async_test
async def test_process_child_reports_exit_code_and_signal() -> None:
    exiter = await ProcessChild.spawn(sys.executable, "-S", "-c", "raise SystemExit(7)")
    assert await exiter.wait() == ExitReason(False, "exit code 7", 7)
    exiter.terminate()  # after the end: harmless
    exiter.kill()
    sleeper = await python(SLEEPER)()
    assert isinstance(sleeper, ProcessChild) and isinstance(sleeper, Child)
    assert sleeper.handle == sleeper.pid == sleeper.process.pid
    sleeper.kill(cause="hang: no heartbeat for 5.0 s")
    reason = await sleeper.wait()
    assert reason.signal == signal.SIGKILL
    assert reason.detail == "hang: no heartbeat for 5.0 s (killed by SIGKILL)"
    assert await sleeper.wait() == reason  # wait() may be awaited again


# -- public names ---------------------------------------------------------------------


def test_public_names_resolve() -> None:
    for name in supervisor.__all__:
        assert getattr(supervisor, name) is not None, name
    assert supervisor.run_heart.__module__ == "project_o.supervisor.heart"
    assert supervisor.HEART_PID_ENV == "PROJECT_O_HEART_PID"
    assert isinstance(SupervisionTree([]), Child)  # trees nest: a tree is a Child
    with pytest.raises(AttributeError):
        supervisor.no_such_name  # noqa: B018
