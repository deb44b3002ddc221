"""A zygote program for tests: each child reports what its sandbox looks like, then waits.

``fork {id, limits}``: the child sends one ``response`` frame with its
session id, pid, RLIMIT_AS and open descriptors, then blocks reading its
channel until the parent closes it (or kills it).
"""

from __future__ import annotations

import os
import resource
import socket
from collections.abc import Sequence
from typing import Any

from project_o.errors import InvalidArgument
from project_o.runtime.child import ChildPlan
from project_o.runtime.sandbox import Limits
from project_o.wire import Message, encode_frame


class ProbeProgram:
    def __init__(self, word: str) -> None:
        self.word = word

    def hello(self) -> dict[str, Any]:
        return {"word": self.word}

    def plan(self, request: dict[str, Any]) -> ChildPlan:
        if request.get("refuse"):
            raise InvalidArgument("this request is refused")
        return ChildPlan(Limits.from_dict(request.get("limits")),
                         report={"word": self.word})

    def run(self, plan: ChildPlan, channel_fd: int) -> int:
        channel = socket.socket(fileno=channel_fd)
        channel.sendall(encode_frame(Message("response", {
            "sid": os.getsid(0), "pid": os.getpid(), "fd": channel_fd,
            "address_space": resource.getrlimit(resource.RLIMIT_AS)[0],
            "fds": sorted(int(name) for name in os.listdir("/proc/self/fd")),
        })))
        channel.recv(1)  # until the parent closes its end, or kills us
        return 7


def load(argv: Sequence[str]) -> ProbeProgram:
    return ProbeProgram(argv[0] if argv else "probe")
