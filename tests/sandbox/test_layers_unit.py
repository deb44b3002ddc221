"""The sandbox's parts on their own: the policy on the command line, the report, Landlock."""

from __future__ import annotations

import os
import shutil
import signal
import socket
from pathlib import Path

import pytest

from project_o.errors import InvalidArgument
from project_o.runtime.confine import SandboxPolicy, SandboxReport, landlock


def test_a_policy_travels_on_the_command_line_unchanged(tmp_path: Path) -> None:
    policy = SandboxPolicy(network=True, hidden=(str(tmp_path),), readonly=("relative",),
                           writable=(str(tmp_path / "w"),), tmp_bytes=1 << 20, uid=5000)
    again = SandboxPolicy.from_json(policy.to_json())
    assert again == policy
    assert again.readonly == (os.path.abspath("relative"),)


@pytest.mark.parametrize("text", ["not json", "[]", '{"tmp_bytes": 0}', '{"uid": 0}',
                                  '{"surprise": 1}'])
def test_a_bad_policy_is_a_clear_error(text: str) -> None:
    with pytest.raises(InvalidArgument):
        SandboxPolicy.from_json(text)


def test_the_report_names_what_is_missing_and_why() -> None:
    report = SandboxReport()
    report.add("seccomp", True, "rules")
    report.add("mount", False, "unshare refused: EPERM")
    report.add("landlock", False, "not needed", needed=False)
    shown = report.to_dict()
    assert shown["active"] == ["seccomp"]
    assert shown["missing"] == {"mount": "unshare refused: EPERM"}
    assert report.active("seccomp") and not report.active("mount")


def _in_child(test: object) -> int:
    """Run ``test`` in a forked child (Landlock is for good); its exit status."""
    pid = os.fork()
    if pid == 0:
        try:
            code = 0 if test() else 1  # type: ignore[operator]
        except BaseException:  # noqa: BLE001 - any surprise is a failure
            code = 2
        os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


@pytest.mark.skipif(landlock.abi_version() < 6, reason="needs Landlock ABI 6 (kernel 6.12+)")
def test_landlock_confines_files_tcp_and_signals(tmp_path: Path) -> None:
    """The fallback where namespaces are not available (as an unprivileged user would)."""
    readable, writable, secret = tmp_path / "r", tmp_path / "w", tmp_path / "secret"
    for directory in (readable, writable, secret):
        directory.mkdir()
    (readable / "f").write_text("ok")
    (secret / "token").write_text("never")
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    parent = os.getpid()

    def contained() -> bool:
        landlock.restrict(readable=[*landlock.SYSTEM_READ, str(readable)],
                          writable=[str(writable)], network=False)
        (writable / "new").write_text("allowed")
        assert (readable / "f").read_text() == "ok"
        denied = 0
        for attempt in (lambda: (secret / "token").read_text(),
                        lambda: (readable / "g").write_text("no"),
                        lambda: socket.create_connection(("127.0.0.1", port), timeout=2),
                        lambda: os.kill(parent, signal.SIGCONT)):
            try:
                attempt()
            except OSError:
                denied += 1
        return denied == 4

    try:
        assert _in_child(contained) == 0
    finally:
        server.close()
    assert (writable / "new").read_text() == "allowed"
    assert not (readable / "g").exists()


def test_every_layer_is_reported_for_an_unprivileged_user() -> None:
    """Whatever a user without privileges may do here (a user namespace or not), every
    layer is in the report: active, or missing with why (status shows what is missing)."""
    import tempfile

    from project_o.runtime.confine import LAYERS
    from project_o.runtime.confine.enter import confine
    from project_o.runtime.confine.syscall_filter import seccomp_available

    seccomp_available()  # libseccomp's binding imported while this user can read it
    nobody = 65534
    scratch = tempfile.mkdtemp()  # the Landlock fallback's private directory goes here
    os.chown(scratch, nobody, nobody)
    per_zygote = {"limits", "cgroup"}  # reported by the zygote after the sandbox

    def unprivileged() -> bool:
        tempfile.tempdir = scratch
        if os.geteuid() == 0:
            os.setgroups([])
            os.setresgid(nobody, nobody, nobody)
            os.setresuid(nobody, nobody, nobody)
        report = confine(SandboxPolicy()).report
        return {layer.name for layer in report.layers} == set(LAYERS) - per_zygote

    try:
        assert _in_child(unprivileged) == 0
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
