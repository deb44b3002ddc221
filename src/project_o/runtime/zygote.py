"""The zygote: agent code imported once, instances forked on demand.

``python -m project_o.runtime.zygote --agent PATH --version V --control-fd N``

::

    supervisor ═══ control socket (fd N) ═══ zygote ──fork──► instance (sandboxed, fd 3)
       fork {id, role, instance_id, limits, config} + SCM_RIGHTS(instance's socket end)
                                         ◄── forked {id, pid}    (or error {id, kind, message})
                                         ◄── exited {pid, exit_code, signal, instance_id}
       shutdown ──────────────────────────►  SIGKILL every instance, report them, exit 0

Startup: PR_SET_PDEATHSIG(SIGKILL) (it dies with the supervisor), child
subreaper (it reaps what instances orphan), import the runtime and the
agent, ``gc.freeze()`` (objects imported so far are never touched by the
collector, so their pages stay shared copy-on-write with every instance),
then ``hello {pid, version, agent}``; if the import failed, ``error
{message, traceback}`` and exit 1.

The zygote is single-threaded (forking a threaded process copies locks in
whatever state other threads left them). It sleeps in select() on the
control socket and a self-pipe written by the SIGCHLD handler. When an
instance dies, its whole process group is killed *before* it is reaped
(while the zombie still reserves the pid, so the group id cannot have
been reused), and its cgroup is removed.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import select
import signal
import socket
import sys
import traceback
from collections import deque
from typing import Any, Final, NoReturn

from project_o.errors import AgentLoadError, InvalidArgument, ProtocolError
from project_o.runtime import cgroup
from project_o.runtime.config import InstanceConfig
from project_o.runtime.instance import EXIT_PROTOCOL, EXIT_RUNTIME_BUG, run_instance
from project_o.runtime.loader import load_agent
from project_o.runtime.params_file import read_params
from project_o.runtime.procctl import (
    exited_child,
    kill_group,
    set_child_subreaper,
    set_parent_death_signal,
)
from project_o.runtime.sandbox import Limits, apply_sandbox
from project_o.wire import FrameDecoder, Message, MessageType, encode_frame

__all__ = ["EXIT_IMPORT_FAILED", "Zygote", "main"]

#: exit status when the agent code failed to import (after the error frame)
EXIT_IMPORT_FAILED: Final = 1
# A fork request is a few hundred bytes; one recv takes many at once.
_RECV_CHUNK: Final = 64 * 1024
# Descriptors accepted per recvmsg: more than one fork's worth in flight.
_MAX_FDS: Final = 16


class Zygote:
    """The zygote's loop; :meth:`serve` never returns."""

    def __init__(self, control: socket.socket, agent: Any, version: str,
                 params: dict[str, Any] | None = None) -> None:
        self._control = control
        self._agent = agent
        self._version = version
        self._params = params or None
        self._decoder = FrameDecoder()
        self._fds: deque[int] = deque()
        self._children: dict[int, str] = {}  # pid -> instance id
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)

    def serve(self) -> NoReturn:
        """Answer fork requests and report exits until shutdown or EOF."""
        self._reap()  # children that died before the handler was in place
        while True:
            readable, _, _ = select.select([self._control.fileno(), self._wake_r], [], [])
            if self._wake_r in readable:
                _drain(self._wake_r)
                self._reap()
            if self._control.fileno() in readable:
                self._read_control()

    # -- control messages -----------------------------------------------

    def _read_control(self) -> None:
        try:
            data, fds, flags, _ = socket.recv_fds(self._control, _RECV_CHUNK, _MAX_FDS)
        except OSError:
            self._stop(0)
        self._fds.extend(fds)
        if flags & socket.MSG_CTRUNC:
            self._stop(EXIT_PROTOCOL, "descriptors were truncated (too many in one message)")
        if not data:
            self._stop(0)  # the supervisor is gone: nothing to serve
        try:
            messages = self._decoder.feed(data)
        except ProtocolError as exc:
            self._stop(EXIT_PROTOCOL, f"bad frame from the supervisor: {exc}")
        for message in messages:
            self._on_message(message)

    def _on_message(self, message: Message) -> None:
        if message.type == MessageType.FORK:
            self._fork(message.data)
        elif message.type == MessageType.SHUTDOWN:
            self._stop(0)
        else:
            self._stop(EXIT_PROTOCOL, f"the supervisor may not send {message.type!r} to a zygote")

    def _fork(self, request: dict[str, Any]) -> None:
        if not self._fds:
            self._stop(EXIT_PROTOCOL, "a fork request arrived without its socket descriptor")
        fd = self._fds.popleft()
        try:
            limits = Limits.from_dict(request.get("limits"))
            config = InstanceConfig.from_dict(request.get("config"))
            role, instance_id = _text(request, "role"), _text(request, "instance_id")
            zygote_pid = os.getpid()
            pid = os.fork()
        except (InvalidArgument, OSError) as exc:
            os.close(fd)
            self._send(
                MessageType.ERROR,
                id=request.get("id"),
                kind=type(exc).__name__,
                message=str(exc),
                traceback="",
            )
            return
        if pid == 0:
            self._become_instance(fd, limits, config, role, instance_id, zygote_pid)
        os.close(fd)
        self._children[pid] = instance_id
        self._send(MessageType.FORKED, id=request.get("id"), pid=pid)

    def _become_instance(
        self,
        fd: int,
        limits: Limits,
        config: InstanceConfig,
        role: str,
        instance_id: str,
        zygote_pid: int,
    ) -> NoReturn:
        code = EXIT_RUNTIME_BUG
        try:
            self._forget_zygote_state()
            sock_fd = apply_sandbox(fd, limits, parent_pid=zygote_pid)
            code = run_instance(
                sock_fd,
                self._agent,
                params=self._params,
                version=self._version,
                role=role,
                instance_id=instance_id,
                config=config,
            )
        except BaseException:  # noqa: BLE001 - whatever happens, never return into the zygote loop
            traceback.print_exc()
        finally:
            _flush_stdio()
            os._exit(code)

    def _forget_zygote_state(self) -> None:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        # detach(): the sandbox closes the descriptor; the socket object must
        # not close a recycled number later.
        self._control.detach()
        for fd in self._fds:
            os.close(fd)
        self._fds.clear()
        self._children.clear()

    # -- children -------------------------------------------------------

    def _reap(self) -> None:
        while (pid := exited_child()) is not None:
            self._bury(pid)

    def _bury(self, pid: int) -> None:
        instance_id = self._children.pop(pid, None)
        if instance_id is not None:
            kill_group(pid)
        _, status = os.waitpid(pid, 0)
        if instance_id is None:
            return  # an orphan an instance left behind: reaped, not reported
        cgroup.remove_cgroup(pid)
        code = os.waitstatus_to_exitcode(status)
        self._send(
            MessageType.EXITED,
            pid=pid,
            instance_id=instance_id,
            exit_code=code if code >= 0 else None,
            signal=-code if code < 0 else None,
        )

    def _stop(self, code: int, reason: str = "") -> NoReturn:
        if reason:
            print(f"zygote {os.getpid()}: {reason}", file=sys.stderr)
        for pid in list(self._children):
            kill_group(pid)
        while self._children:
            self._bury(next(iter(self._children)))
        _flush_stdio()
        os._exit(code)

    def _send(self, message_type: MessageType, **data: Any) -> None:
        try:
            self._control.sendall(encode_frame(Message(message_type, data)))
        except OSError:
            pass  # the supervisor is gone; EOF on the next read ends the loop


def _text(request: dict[str, Any], key: str) -> str:
    value = request.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidArgument(f"fork request needs a non-empty str {key!r}, got {value!r}")
    return value


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


def _flush_stdio() -> None:
    for stream in (sys.stdout, sys.stderr):
        # A closed or broken stream must not stop the exit.
        with contextlib.suppress(Exception):
            stream.flush()


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m project_o.runtime.zygote")
    parser.add_argument("--agent", required=True, help="agent .py file or package directory")
    parser.add_argument("--version", required=True, help="the version this zygote serves")
    parser.add_argument("--control-fd", type=int, required=True, help="inherited AF_UNIX socket")
    parser.add_argument(
        "--parent-pid",
        type=int,
        default=None,
        help="the supervisor's pid: exit at once if it is already gone",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> NoReturn:
    """Entry point: import the agent, say hello, serve forks."""
    args = _parse(argv)
    set_parent_death_signal(signal.SIGKILL, expected_parent=args.parent_pid)
    set_child_subreaper()
    control = socket.socket(fileno=args.control_fd)
    os.set_inheritable(args.control_fd, False)
    try:
        agent = load_agent(args.agent)
        # A version's genes (written beside its sources by Genome.write_to).
        params = read_params(args.agent)
    except BaseException as exc:  # noqa: BLE001 - report any import failure, then exit
        _send_quietly(control, MessageType.ERROR, **_import_failure(exc))
        os._exit(EXIT_IMPORT_FAILED)
    cgroup.cgroup_available()  # probe once here, so every fork inherits the answer
    gc.collect()
    gc.freeze()
    _send_quietly(
        control, MessageType.HELLO, pid=os.getpid(), version=args.version, agent=agent.name
    )
    Zygote(control, agent, args.version, params).serve()


def _import_failure(exc: BaseException) -> dict[str, str]:
    if isinstance(exc, AgentLoadError):
        return {"message": str(exc.args[0]), "traceback": exc.traceback or ""}
    return {
        "message": f"{type(exc).__name__}: {exc}",
        "traceback": "".join(traceback.format_exception(exc)),
    }


def _send_quietly(control: socket.socket, message_type: MessageType, **data: Any) -> None:
    try:
        control.sendall(encode_frame(Message(message_type, data)))
    except OSError:
        pass


if __name__ == "__main__":
    main()
