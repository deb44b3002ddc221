"""A zygote program for the cgroup tests: each child does one hostile thing, says what came
of it in one ``response`` frame, then waits until its parent closes the channel or kills it.

``fork {id, act, limits}``, ``act`` one of:

* ``bomb``: fork 500 children that sleep; answer how many forks succeeded and failed;
* ``daemon``: ``setsid()`` and double-fork a grandchild that sleeps forever; answer its pid;
* ``write``: try to write its own cgroup's files, its parents' and the root's ``cgroup.procs``
  (raise its limits, leave its group); answer what each attempt got.
"""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Sequence
from typing import Any

from project_o.runtime.child import ChildPlan
from project_o.runtime.sandbox import Limits
from project_o.wire import Message, encode_frame

BOMB_FORKS = 500
CGROUP_FS = "/sys/fs/cgroup"


class CgroupProbes:
    def hello(self) -> dict[str, Any]:
        return {}

    def plan(self, request: dict[str, Any]) -> ChildPlan:
        return ChildPlan(Limits.from_dict(request.get("limits")), work=request["act"])

    def run(self, plan: ChildPlan, channel_fd: int) -> int:
        channel = socket.socket(fileno=channel_fd)
        result = {"bomb": _bomb, "daemon": _daemon, "write": _write}[plan.work]()
        channel.sendall(encode_frame(Message("response", result)))
        channel.recv(1)  # until the parent closes its end, or kills us
        return 0


def _bomb() -> dict[str, Any]:
    forked = refused = 0
    for _ in range(BOMB_FORKS):
        try:
            pid = os.fork()
        except OSError:
            refused += 1
            continue
        if pid == 0:
            signal.pause()
            os._exit(0)
        forked += 1
    return {"forked": forked, "refused": refused}


def _daemon() -> dict[str, Any]:
    ready_r, ready_w = os.pipe()
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            os.write(ready_w, f"{os.getpid()} {os.getsid(0)}".encode())
            while True:
                signal.pause()
        os._exit(0)
    pid, sid = map(int, os.read(ready_r, 64).split())
    return {"grandchild": pid, "sid": sid, "own_sid": os.getsid(0)}


def _write() -> dict[str, Any]:
    targets = [f"{CGROUP_FS}/{name}" for name in ("pids/cgroup.procs", "memory/cgroup.procs",
                                                   "unified/cgroup.procs", "cgroup.procs")]
    with open("/proc/self/cgroup") as own:
        for line in own.read().splitlines():
            _, controllers, path = line.split(":", 2)
            mount = controllers or "unified"
            if controllers and controllers not in ("pids", "memory"):
                continue
            here = f"{CGROUP_FS}/{mount}{path}"
            targets += [f"{here}/{name}" for name in ("pids.max", "memory.limit_in_bytes",
                                                      "memory.max", "cgroup.procs",
                                                      "cgroup.kill")]
            targets.append(f"{os.path.dirname(here)}/cgroup.procs")  # out to the zygote's
    outcome = {}
    for target in targets:
        try:
            fd = os.open(target, os.O_WRONLY)
        except OSError as exc:
            outcome[target] = exc.strerror or str(exc)
            continue
        try:
            os.write(fd, b"max" if target.endswith(".max") else b"0")
            outcome[target] = "written"
        except OSError as exc:
            outcome[target] = f"opened, write refused: {exc.strerror}"
        finally:
            os.close(fd)
    return {"outcome": outcome}


def load(argv: Sequence[str]) -> CgroupProbes:
    return CgroupProbes()
