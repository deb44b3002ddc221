"""The supervisor and the heart keep their secrets: non-dumpable, nothing in an environment.

Each check reads a real process's ``/proc/<pid>/environ`` and ``/mem`` from
a separate process of the same uid. As root, every process of a test
(supervisor, heart, reader, control) runs without CAP_SYS_PTRACE in its
bounding set: with it root reads any process, dumpable or not, so the
test would prove nothing. A dumpable process started the same way is the
control that such reads work at all.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from project_o.errors import InvalidArgument
from project_o.supervisor import hardening, heart
from tests.processes import assert_gone
from tests.supervisor.harness import CHAOS_AGENT, FAST_HEARTBEAT, TOKEN, Stack

KEY = "sk-hardening-test-51d0e2"

#: run in a child: read each pid's environ and mem, say what happened
_READER = r"""
import json, sys
results = {}
for pid in sys.argv[1:]:
    for name in ("environ", "mem"):
        try:
            with open(f"/proc/{pid}/{name}", "rb") as file:
                results[f"{pid}/{name}"] = "read" if name == "mem" else file.read().decode(
                    errors="replace")
        except OSError as exc:
            results[f"{pid}/{name}"] = type(exc).__name__
print(json.dumps(results))
"""
_PR_CAPBSET_DROP = 24
_CAP_SYS_PTRACE = 19


def _without_ptrace() -> None:
    """In a child before exec: as root, lose CAP_SYS_PTRACE for good (uid stays 0).

    Root's exec gets every capability of the bounding set; with this one
    gone, reading another process is up to the same rules as for any user.
    """
    if os.geteuid() == 0 and ctypes.CDLL(None).prctl(_PR_CAPBSET_DROP, _CAP_SYS_PTRACE,
                                                       0, 0, 0) != 0:
        raise OSError("prctl(PR_CAPBSET_DROP, CAP_SYS_PTRACE) failed")


def _read_as_same_uid(*pids: int) -> dict[str, str]:
    done = subprocess.run([sys.executable, "-c", _READER, *map(str, pids)], check=True,
                          capture_output=True, text=True, timeout=30,
                          preexec_fn=_without_ptrace)
    result: dict[str, str] = json.loads(done.stdout)
    return result


def _env(**extra: str) -> dict[str, str]:
    return {"PROJECT_O_LLM_API_KEY": KEY, "PROJECT_O_LLM_MODEL": "m",
            "PROJECT_O_LLM_BASE_URL": "http://127.0.0.1:9/v1", **extra}


def test_the_secrets_pipe_carries_a_map_of_strings_and_refuses_anything_else() -> None:
    fd = heart.secrets_pipe({"PROJECT_O_TOKEN": "t", "PROJECT_O_LLM_API_KEY": KEY})
    assert os.get_inheritable(fd)
    assert heart.read_secrets(fd) == {"PROJECT_O_TOKEN": "t", "PROJECT_O_LLM_API_KEY": KEY}
    with pytest.raises(OSError):
        os.fstat(fd)  # read_secrets closed it
    # Over the pipe's buffer the write would block for good: refused before it starts.
    with pytest.raises(InvalidArgument, match="bytes, over"):
        hardening.secrets_pipe({"PROJECT_O_TOKEN": "x" * hardening.MAX_SECRETS_BYTES})
    for raw in (b"not json", b'["a list"]', b'{"PROJECT_O_TOKEN": 7}'):
        read_end, write_end = os.pipe()
        os.write(write_end, raw)
        os.close(write_end)
        with pytest.raises(ValueError, match="secrets pipe"):
            heart.read_secrets(read_end)


def test_a_plain_process_of_the_same_uid_can_be_read_the_control() -> None:
    with subprocess.Popen(["sleep", "30"], env={"MARKER": KEY},
                          preexec_fn=_without_ptrace) as plain:  # noqa: PLW1509 - a prctl
        try:
            seen = _read_as_same_uid(plain.pid)
        finally:
            plain.kill()
    assert KEY in seen[f"{plain.pid}/environ"] and seen[f"{plain.pid}/mem"] == "read"


@pytest.mark.parametrize("with_heart", [False, True], ids=["supervisor", "heart"])
def test_supervisor_and_heart_cannot_be_read_and_hold_no_secret_in_their_environment(
        tmp_path: Path, with_heart: bool) -> None:
    stack = Stack(tmp_path / "vault", ["--agent", str(CHAOS_AGENT), "--no-standby", *FAST_HEARTBEAT], heart=with_heart,
                  env=_env(), preexec=_without_ptrace)
    try:
        pids = [stack.supervisor_pid()] + ([stack.process.pid] if with_heart else [])
        seen = _read_as_same_uid(*pids)
        for pid in pids:
            assert seen[f"{pid}/mem"] == "PermissionError", seen
            # Refused where the kernel checks dumpability for it; some kernels let a
            # same-uid reader through: then there is nothing to find in it.
            environ = seen[f"{pid}/environ"]
            assert environ == "PermissionError" or (KEY not in environ and TOKEN not in environ)
        # Even a reader that may read anything (this test, as root): nothing to find.
        for pid in pids:
            raw = _own_read(pid)
            assert raw is None or (KEY.encode() not in raw and TOKEN.encode() not in raw)
        for child in _descendants(stack.supervisor_pid()):
            environ = _own_read(child)
            assert environ is None or KEY.encode() not in environ, f"pid {child} holds the key"
        assert stack.ask({"do": "get", "key": "x"}).status_code == 200  # the token still works
    finally:
        stack.stop()


def test_the_heart_hands_the_secrets_to_a_restarted_supervisor(tmp_path: Path) -> None:
    stack = Stack(tmp_path / "vault", ["--agent", str(CHAOS_AGENT), "--no-standby", *FAST_HEARTBEAT], heart=True, env=_env(),
                  preexec=_without_ptrace)
    try:
        first = stack.supervisor_pid()
        os.kill(first, signal.SIGKILL)
        assert_gone(first, "the killed supervisor")
        stack.wait_ready(not_pid=first)
        assert stack.supervisor_pid() != first
        # The restarted supervisor got the token from the heart: the old one is accepted.
        assert stack.ask({"do": "get", "key": "x"}).status_code == 200
        assert _read_as_same_uid(stack.supervisor_pid())[
            f"{stack.supervisor_pid()}/mem"] == "PermissionError"
    finally:
        stack.stop()


def test_secrets_arrive_on_a_pipe_and_leave_the_environment() -> None:
    script = (
        "import json, os\n"
        "from project_o.supervisor.hardening import take_secrets, is_dumpable\n"
        "secrets = take_secrets()\n"
        "with open('/proc/self/environ', 'rb') as f: raw = f.read()\n"
        "print(json.dumps({'secrets': secrets, 'dumpable': is_dumpable(),\n"
        "                  'in_env': [n for n in os.environ if n.startswith('PROJECT_O_')],\n"
        "                  'in_block': 'from-env' in raw.decode()}))\n"
    )
    fd = hardening.secrets_pipe({"PROJECT_O_TOKEN": "from-pipe"})
    try:
        env = {**os.environ, "PROJECT_O_SECRETS_FD": str(fd),
               "PROJECT_O_LLM_API_KEY": "from-env", "PYTHONPATH": _package_root()}
        done = subprocess.run([sys.executable, "-c", script], env=env, pass_fds=(fd,),
                              check=True, capture_output=True, text=True, timeout=30)
    finally:
        os.close(fd)
    seen = json.loads(done.stdout)
    assert seen["secrets"] == {"PROJECT_O_TOKEN": "from-pipe", "PROJECT_O_LLM_API_KEY": "from-env"}
    assert seen["dumpable"] is False and seen["in_env"] == [] and seen["in_block"] is False


@pytest.mark.parametrize("value, says", [("99", "cannot read the secrets pipe"),
                                          ("abc", "must be a descriptor number")])
def test_a_bad_secrets_descriptor_is_a_usage_error_not_a_traceback(value: str, says: str) -> None:
    env = {**os.environ, "PROJECT_O_SECRETS_FD": value, "PYTHONPATH": _package_root()}
    supervisor = subprocess.run([sys.executable, "-m", "project_o.supervisor"], env=env,
                                check=False, capture_output=True, text=True, timeout=60)
    assert supervisor.returncode == heart.EXIT_USAGE, supervisor.stderr
    assert says in supervisor.stderr and "Traceback" not in supervisor.stderr
    if value.isdigit():  # the heart's --secrets-fd is an int by argparse
        beat = subprocess.run(heart.heart_command(["true"], secrets_fd=int(value)),
                              check=False, capture_output=True, text=True, timeout=60)
        assert beat.returncode == heart.EXIT_USAGE, beat.stderr
        assert f"heart: {says}" in beat.stderr and "Traceback" not in beat.stderr


def _own_read(pid: int) -> bytes | None:
    try:
        with open(f"/proc/{pid}/environ", "rb") as file:
            return file.read()
    except OSError:
        return None  # not readable by this test either (it runs unprivileged)


def _descendants(pid: int) -> list[int]:
    import psutil

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        children = [c.pid for c in psutil.Process(pid).children(recursive=True)]
        if len(children) >= 2:  # the zygote and the main
            return children
        time.sleep(0.05)
    raise AssertionError("the supervisor did not start its zygote and main")


def _package_root() -> str:
    import project_o

    return str(Path(project_o.__file__).resolve().parent.parent)
