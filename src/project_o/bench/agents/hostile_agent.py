"""An agent that tries to get out of its sandbox: at import time, and on each request.

Every probe *attempts* one thing agent code must never manage and says
whether it succeeded; it changes nothing when it fails, and as little as
it can when it succeeds (opens without writing, removes what it made)::

    {"do": "probe", "probe": NAME, ...arguments} -> {"probe", "attempts", "succeeded", "detail"}
    {"do": "import_probes"}                      -> what the module saw when it was imported
    {"do": "set" | "get", "key", "value"?}       -> memory, to show nothing was lost

==================  ============================================================
probe               attempts
==================  ============================================================
read                open each ``paths`` for reading (the token, /proc/PID/environ, mem)
open_write          open each ``paths`` for writing (WAL, checkpoint, catalog)
create              create a new file in each ``dirs`` (package source, $HOME), then remove it
connect             TCP-connect to each ``ports`` on 127.0.0.1 (the gateway, a listener)
signal              SIGKILL each ``pids`` (the supervisor, the heart), then the parent
setsid_grandchild   fork; the child forks a grandchild that calls setsid() and sleeps
fork_bomb           fork ``count`` sleeping children (``reap``: then kill them)
fill_tmp            write /tmp full
syscalls            ptrace, process_vm_readv, unshare, mount, bpf, keyctl (via libc)
==================  ============================================================

``{"do": "hang_beating"}`` hangs while a thread of its own writes well-formed
heartbeats on the instance's socket: liveness a handler can forge, so the
request's deadline, not the heartbeat, must end it.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import signal
import socket
import threading
import time
from typing import Any

from project_o import Agent

agent = Agent("hostile", max_concurrency=4)  # few slots: a test fills them with hung handlers

_libc = ctypes.CDLL(None, use_errno=True)
#: how long a forked probe process sleeps (it must be killed long before)
SLEEP_S = 120
#: beside this file: {"port": N, "read": [paths]} to try while being imported
TARGETS_FILE = "hostile_targets.json"


def _attempt(action: Any) -> tuple[bool, str]:
    try:
        result = action()
    except OSError as exc:
        return False, f"{errno.errorcode.get(exc.errno or 0, exc.errno)}"
    return True, f"succeeded: {result!r}"[:200]


def _open_close(path: str, flags: int) -> str:
    os.close(os.open(path, flags))
    return path


def _read(args: dict[str, Any]) -> list[tuple[bool, str]]:
    return [_attempt(lambda p=p: _open_close(p, os.O_RDONLY)) for p in args["paths"]]


def _open_write(args: dict[str, Any]) -> list[tuple[bool, str]]:
    return [_attempt(lambda p=p: _open_close(p, os.O_WRONLY)) for p in args["paths"]]


def _create_one(directory: str) -> str:
    path = os.path.join(directory, f"hostile-{os.getpid()}-{time.monotonic_ns()}")
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
    os.unlink(path)
    return path


def _create(args: dict[str, Any]) -> list[tuple[bool, str]]:
    return [_attempt(lambda d=d: _create_one(d)) for d in args["dirs"]]


def _connect_one(port: int) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=2):
        return f"127.0.0.1:{port}"


def _connect(args: dict[str, Any]) -> list[tuple[bool, str]]:
    return [_attempt(lambda p=p: _connect_one(p)) for p in args["ports"]]


def _kill(pid: int) -> int:
    os.kill(pid, signal.SIGKILL)
    return pid


def _signal(args: dict[str, Any]) -> list[tuple[bool, str]]:
    results = [_attempt(lambda p=p: _kill(p)) for p in args["pids"]]
    # The parent as this process sees it: the zygote. Signals to the first
    # process of a PID namespace from inside are dropped, so a "success" here
    # is checked by the caller (the zygote must still be alive).
    results.append(_attempt(lambda: _kill(os.getppid())))
    return results


def _setsid_grandchild(args: dict[str, Any]) -> list[tuple[bool, str]]:
    child = os.fork()
    if child == 0:
        if os.fork() == 0:
            os.setsid()
            time.sleep(SLEEP_S)
        os._exit(0)
    os.waitpid(child, 0)
    # Whether the grandchild outlives this instance is for the caller to see.
    return [(False, "grandchild started; it must die with the instance")]


def _fork_bomb(args: dict[str, Any]) -> list[tuple[bool, str]]:
    children: list[int] = []
    error = ""
    for _ in range(int(args.get("count", 500))):
        try:
            pid = os.fork()
        except OSError as exc:
            error = errno.errorcode.get(exc.errno or 0, str(exc.errno))
            break
        if pid == 0:
            time.sleep(SLEEP_S)
            os._exit(0)
        children.append(pid)
    made = len(children)
    if args.get("reap"):  # give the slots back, so the next probe can start a thread
        for pid in children:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    succeeded = made >= int(args.get("count", 500))
    return [(succeeded, f"{made} forks, then {error or 'no error'}")]


def _fill_tmp(args: dict[str, Any]) -> list[tuple[bool, str]]:
    path = f"/tmp/hostile-fill-{os.getpid()}"
    written = 0
    block = b"\0" * (1 << 20)
    limit = int(args.get("limit_bytes", 1 << 30))
    try:
        with open(path, "wb") as file:
            while written < limit:
                written += file.write(block)
                file.flush()
    except OSError as exc:
        detail = f"{written >> 20} MiB, then {errno.errorcode.get(exc.errno or 0, exc.errno)}"
    else:
        detail = f"{written >> 20} MiB without an error"
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
    return [(written >= limit, detail)]


def _syscall(name: str, *args: Any) -> int:
    result = int(getattr(_libc, name)(*args))
    if result == -1:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return result


def _syscalls(args: dict[str, Any]) -> list[tuple[bool, str]]:
    target = int(args.get("pid", 1))
    buffer = ctypes.create_string_buffer(8)
    local = (ctypes.c_void_p * 2)(ctypes.cast(buffer, ctypes.c_void_p), 8)
    remote = (ctypes.c_void_p * 2)(4096, 8)
    attempts = [
        lambda: _syscall("ptrace", 16, target, 0, 0),  # PTRACE_ATTACH
        lambda: _syscall("process_vm_readv", target, local, 1, remote, 1, 0),
        lambda: _syscall("unshare", 0x10000000),  # CLONE_NEWUSER
        lambda: _syscall("unshare", 0x00020000),  # CLONE_NEWNS
        lambda: _syscall("mount", b"none", b"/tmp", b"tmpfs", 0, None),
        lambda: _syscall("syscall", 321, 0, 0, 0),  # bpf (x86_64)
        lambda: _syscall("syscall", 250, 0, 0, 0),  # keyctl (x86_64)
    ]
    return [_attempt(action) for action in attempts]


_PROBES = {"read": _read, "open_write": _open_write, "create": _create, "connect": _connect,
           "signal": _signal, "setsid_grandchild": _setsid_grandchild,
           "fork_bomb": _fork_bomb, "fill_tmp": _fill_tmp, "syscalls": _syscalls}


def _status_field(name: str) -> str:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(name + ":"):
                return line.split(":", 1)[1].strip()
    return ""


def _at_import() -> dict[str, Any]:
    """What this module sees while the zygote imports it."""
    seen: dict[str, Any] = {
        "uid": os.getuid(), "gid": os.getgid(), "pid": os.getpid(),
        "no_new_privs": _status_field("NoNewPrivs"), "seccomp": _status_field("Seccomp"),
        "processes": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
        "interfaces": [name for _, name in socket.if_nameindex()],
        "hostname": socket.gethostname(),
    }
    seen["unshare"] = _attempt(lambda: _syscall("unshare", 0x10000000))
    targets = _targets()
    if "port" in targets:
        seen["connect"] = _attempt(lambda: _connect_one(int(targets["port"])))
    for path in targets.get("read", []):
        seen[f"read {path}"] = _attempt(lambda p=path: _open_close(p, os.O_RDONLY))
    return seen


def _targets() -> dict[str, Any]:
    """What to try at import time: ``hostile_targets.json`` beside this file, if any."""
    try:
        with open(os.path.join(os.path.dirname(__file__), TARGETS_FILE)) as file:
            loaded: dict[str, Any] = json.load(file)
            return loaded
    except OSError:
        return {}


AT_IMPORT = _at_import()


def _forge_heartbeats() -> None:
    from project_o.runtime.sandbox import INSTANCE_FD
    from project_o.wire import Message, MessageType, encode_frame

    for beat in range(1_000_000, 2_000_000):
        frame = encode_frame(Message(MessageType.HEARTBEAT,
                                     {"beat": beat, "rss_bytes": 1, "last_sequence": 0}))
        os.write(INSTANCE_FD, frame)
        time.sleep(0.02)


def _hang_beating() -> None:
    threading.Thread(target=_forge_heartbeats, daemon=True).start()
    while True:  # a handler that never answers, and never stops looking alive
        time.sleep(1)


@agent.handler
def handle(ctx: Any, request: dict[str, Any]) -> Any:
    do = request.get("do")
    if do == "set":
        ctx.memory.set(request["key"], request["value"])
        return {"ok": True}
    if do == "get":
        return {"value": ctx.memory.get(request["key"])}
    if do == "import_probes":
        return AT_IMPORT
    if do == "hang_beating":
        _hang_beating()
    if do == "probe":
        name = request["probe"]
        results = _PROBES[name](request)
        return {"probe": name, "attempts": len(results),
                "succeeded": sum(ok for ok, _ in results),
                "detail": [detail for _, detail in results]}
    return {"unknown": do}
