"""The sandbox entered by a real unprivileged process, checked against what actually holds.

Python lives where only root may read it on some machines (under /root), so an
unprivileged *interpreter* cannot start there; instead a forked child of the test, Python
already loaded, gives up root for good (``setgroups``, ``setresgid``, ``setresuid`` to
nobody: no capability left, not dumpable, as unprivileged as a process gets) and enters
the sandbox as a zygote would. It then observes what each layer claims -- its namespaces,
capabilities, ``NoNewPrivs``, seccomp, Landlock -- and makes the hostile attempts (the
vault's token, a file the user owns, ``$HOME``, the loopback, a process of its own uid, a
new namespace, its cgroup). The test asserts the report says exactly what holds, and
that every attempt a reported layer should stop failed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from project_o.runtime.confine import LAYERS, SandboxPolicy, cgroups, linux, syscall_filter
from project_o.runtime.confine.enter import confine

NOBODY = 65534
PERSISTENT_TMP = "/var/tmp"
NAMESPACES = ("ipc", "mnt", "net", "pid", "user", "uts")
pytestmark = pytest.mark.skipif(os.geteuid() != 0,
                                reason="dropping to another uid needs root (run as a user, "
                                       "the whole suite is the unprivileged test)")


@dataclass
class Setup:
    """What the unprivileged process is let loose on (made by root, before the drop)."""

    vault: Path
    home: Path
    owned: Path  # a directory the user owns, outside anything the policy names
    scratch: Path
    port: int
    sibling: int  # a process of the same uid, outside the sandbox
    namespaces: dict[str, str]


@pytest.fixture
def setup() -> Iterator[Setup]:
    # Not in /tmp: the sandbox has a /tmp of its own, where these would simply be absent.
    if not os.path.isdir(PERSISTENT_TMP):
        pytest.skip(f"no {PERSISTENT_TMP} here to put the user's files in")
    base = Path(tempfile.mkdtemp(prefix="project-o-unprivileged-", dir=PERSISTENT_TMP))
    base.chmod(0o755)
    vault, home, owned, scratch = (base / n for n in ("vault", "home", "owned", "scratch"))
    vault.mkdir(mode=0o755)
    (vault / "token").write_text("secret")
    (vault / "token").chmod(0o644)  # readable by any uid: only the sandbox can refuse it
    for directory in (home, owned, scratch):
        directory.mkdir(mode=0o755)
        os.chown(directory, NOBODY, NOBODY)
    (home / "notes").write_text("mine")
    os.chown(home / "notes", NOBODY, NOBODY)
    server = socket.create_server(("127.0.0.1", 0))
    sibling = os.fork()
    if sibling == 0:
        os.setresuid(NOBODY, NOBODY, NOBODY)
        signal.pause()
        os._exit(0)
    try:
        yield Setup(vault, home, owned, scratch, server.getsockname()[1], sibling,
                    {n: os.readlink(f"/proc/self/ns/{n}") for n in NAMESPACES})
    finally:
        os.kill(sibling, signal.SIGKILL)
        os.waitpid(sibling, 0)
        server.close()
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize("namespaces", [True, False], ids=["namespaces", "landlock-only"])
def test_an_unprivileged_zygote_reports_exactly_what_holds(setup: Setup,
                                                           namespaces: bool) -> None:
    """``namespaces=False`` is what a user without user namespaces gets: Landlock alone."""
    result = _as_nobody(lambda: _confine_and_look(setup, namespaces))
    report, seen, tried = result["report"], result["seen"], result["tried"]
    layers = {layer["name"]: layer for layer in report["layers"]}
    assert set(layers) == set(LAYERS) - {"limits", "cgroup"}  # those: the zygote's parent
    active = {name for name, layer in layers.items() if layer["active"]}

    # Each claim against what the process sees of itself.
    assert seen["uid"] == NOBODY
    moved = {n for n in NAMESPACES if seen["namespaces"][n] != setup.namespaces[n]}
    assert ("identity" in active) == ("user" in moved and seen["CapEff"] == 0)
    covered = sorted([str(setup.vault), str(setup.home)])  # something mounted on both
    assert ("mount" in active) == ("mnt" in moved and seen["covered"] == covered)
    assert ("pid" in active) == ("pid" in moved and seen["pid"] == 1)
    assert ("ipc" in active) == ("ipc" in moved)
    assert ("uts" in active) == ("uts" in moved and seen["hostname"] == "project-o-sandbox")
    assert ("network" in active) == ("net" in moved and seen["interfaces"] == ["lo"])
    assert ("no_new_privs" in active) == (seen["NoNewPrivs"] == 1)
    assert ("seccomp" in active) == (seen["Seccomp"] == 2)
    # Landlock shows only in what it refuses: a write the uid itself may make.
    assert ("landlock" in active) == (tried["write a file the user owns"] == "Permission denied")
    for name, layer in layers.items():
        assert layer["active"] or layer["detail"], name  # missing: always with why

    # The attempts each active layer must stop.
    stopped_by = {
        "read the vault's token": {"mount", "landlock"},
        "write a file the user owns": {"landlock"},
        "write $HOME": {"mount", "landlock"},
        "connect to the loopback": {"network", "landlock"},
        "signal a process of its own uid": {"pid", "landlock"},
        "make a user namespace": {"seccomp"},
        "join the root cgroup": {"mount", "landlock"},
    }
    for attempt, layers_that_stop in stopped_by.items():
        if layers_that_stop & active:
            assert tried[attempt] != "done", (attempt, tried[attempt])
    assert (setup.home / "notes").read_text() == "mine"
    assert list(setup.owned.iterdir()) == []

    # What this kernel allows an unprivileged user is all there: nothing else is missing.
    if not namespaces:
        assert active >= {"no_new_privs", "seccomp", "landlock"}
        assert not active & {"identity", "mount", "pid", "ipc", "uts", "network"}
    elif _userns_allowed():
        assert active == set(LAYERS) - {"limits", "cgroup"}


def test_an_unprivileged_parent_reports_why_it_has_no_cgroups() -> None:
    def look() -> dict[str, Any]:
        host = cgroups.CgroupHost(cgroups.discover())
        placed = cgroups.ZygoteCgroups.start(os.getpid(), host)
        return {"available": host.available, "layer": list(placed.layer),
                "missing": host.missing}

    result = _as_nobody(look)
    writable = [h for h in cgroups.discover() if _writable_by_nobody(h.own)]
    assert result["available"] == bool(writable) == result["layer"][0]
    if not writable:
        assert result["layer"][1] == result["missing"]["cgroup"]
        assert "could not be made" in result["layer"][1] or "writable" in result["layer"][1]


def _confine_and_look(setup: Setup, namespaces: bool) -> dict[str, Any]:
    os.environ["HOME"] = str(setup.home)
    tempfile.tempdir = str(setup.scratch)  # where the Landlock fallback's directory goes
    policy = SandboxPolicy(hidden=(str(setup.vault),), namespaces=namespaces)
    report = confine(policy).report.to_dict()
    return {"report": report, "seen": _seen(setup), "tried": _tried(setup)}


def _seen(setup: Setup) -> dict[str, Any]:
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text()
                  .splitlines())
    mounted = {line.split()[4] for line in Path("/proc/self/mountinfo").read_text()
               .splitlines()}
    return {
        "uid": os.getuid(), "pid": os.getpid(), "hostname": socket.gethostname(),
        "namespaces": {n: os.readlink(f"/proc/self/ns/{n}") for n in NAMESPACES},
        "CapEff": int(status["CapEff"], 16), "NoNewPrivs": int(status["NoNewPrivs"]),
        "Seccomp": int(status["Seccomp"]),
        "covered": sorted(str(p) for p in (setup.vault, setup.home) if str(p) in mounted),
        "interfaces": sorted(name for _, name in socket.if_nameindex()),
    }


def _tried(setup: Setup) -> dict[str, str]:
    attempts: dict[str, Callable[[], object]] = {
        "read the vault's token": lambda: (setup.vault / "token").read_text(),
        "write a file the user owns": lambda: (setup.owned / "new").write_text("x"),
        "write $HOME": lambda: (setup.home / "notes").write_text("overwritten"),
        "connect to the loopback": lambda: socket.create_connection(("127.0.0.1", setup.port),
                                                                    timeout=5).close(),
        "signal a process of its own uid": lambda: os.kill(setup.sibling, 0),
        "make a user namespace": lambda: linux.unshare(linux.CLONE_NEWUSER),
        "join the root cgroup": lambda: Path("/sys/fs/cgroup/unified/cgroup.procs")
        .write_text("0"),
    }
    tried = {}
    for name, attempt in attempts.items():
        try:
            attempt()
            tried[name] = "done"
        except OSError as exc:
            tried[name] = exc.strerror or str(exc)
    return tried


def _as_nobody(work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``work()`` in a forked child that gave up root for good; its JSON answer."""
    syscall_filter.seccomp_available()  # libseccomp's binding, loaded while root reads it
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.close(read_end)
            os.setgroups([])
            os.setresgid(NOBODY, NOBODY, NOBODY)
            os.setresuid(NOBODY, NOBODY, NOBODY)
            answer = {"ok": work()}
        except BaseException as exc:  # noqa: BLE001 - reported to the test, never raised here
            answer, code = {"error": f"{type(exc).__name__}: {exc}"}, 1
        with os.fdopen(write_end, "w") as out:
            json.dump(answer, out)
        os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end) as answers:
        text = answers.read()
    os.waitpid(pid, 0)
    answer = json.loads(text)
    assert "error" not in answer, answer["error"]
    result: dict[str, Any] = answer["ok"]
    return result


def _userns_allowed() -> bool:
    """Whether this kernel lets an unprivileged user make a user namespace."""
    def probe() -> dict[str, Any]:
        try:
            linux.unshare(linux.CLONE_NEWUSER)
        except OSError as exc:
            return {"allowed": False, "why": exc.strerror}
        return {"allowed": True}

    return bool(_as_nobody(probe)["allowed"])


def _writable_by_nobody(directory: Path) -> bool:
    def probe() -> dict[str, Any]:
        return {"writable": os.access(directory, os.W_OK)}

    return bool(_as_nobody(probe)["writable"])
