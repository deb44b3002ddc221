"""The zygote: code imported once, sandboxed children forked on demand.

``python -m project_o.runtime.zygote --control-fd N [--parent-pid P] [--program MOD:ATTR] ARGS``

One process core for everything that runs untrusted code. What a child
runs is the zygote's *program* (a :class:`ChildProgram`, named by
``--program``; the rest of the command line is its own):

==========================================  ===========================  ====================
program                                     imports once                 each child runs
==========================================  ===========================  ====================
``project_o.runtime.instance_program``      an agent version             one instance
``project_o.evolution.evaluator``           a task                       a batch of candidates
``project_o.evolution.quick_checks``        a candidate agent            its quick checks
==========================================  ===========================  ====================

::

    parent ═══ control socket (fd N) ═══ zygote ──fork──► child (sandboxed, fd 3)
       fork {id, ...program's fields} + SCM_RIGHTS(the child's end: socket or pipe)
                                         ◄── forked {id, pid}    (or error {id, kind, message})
                                         ◄── exited {id, pid, exit_code, signal, memory_kb, ...}
       kill {id} ─────────────────────────►  SIGKILL that child's process group (while unreaped)
       shutdown ──────────────────────────►  SIGKILL every child, report them, exit 0

Startup: PR_SET_PDEATHSIG(SIGKILL) (it dies with its parent), child
subreaper (it reaps what children orphan), load the program (it imports
the agent or task), ``gc.freeze()`` (objects imported so far are never
touched by the collector, so their pages stay shared copy-on-write with
every child), then ``hello {pid, ...program's fields}``; if loading
failed, ``error {message, traceback}`` and exit 1.

Where the sandbox is applied, in one place for every process that runs
agent or candidate code (each is a zygote or a child forked from one):

* :func:`enter_zygote`, before the program is loaded (before the first
  line of agent code is imported): what must confine all agent code, and
  what every child inherits;
* :func:`enter_child`, in each child right after the fork, before its
  program runs: its own session, descriptors and limits.

The zygote is single-threaded (forking a threaded process copies locks in
whatever state other threads left them). It sleeps in select() on the
control socket and a self-pipe written by the SIGCHLD handler. When a
child dies, its whole process group is killed *before* it is reaped
(while the zombie still reserves the pid, so the group id cannot have
been reused). The cgroup the zygote and its children live in is its
parent's (see :mod:`project_o.runtime.confine.cgroups`).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import itertools
import os
import select
import shutil
import signal
import socket
import sys
import traceback
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final, NoReturn

from project_o.errors import AgentLoadError, InvalidArgument, ProtocolError
from project_o.runtime import instance_program
from project_o.runtime.child import (
    DEFAULT_PROGRAM,
    ZYGOTE_MODULE,
    ChildPlan,
    ChildProgram,
    ProgramLoader,
)
from project_o.runtime.confine.enter import Confinement, confine
from project_o.runtime.confine.policy import SandboxPolicy, SandboxReport
from project_o.runtime.instance import EXIT_PROTOCOL, EXIT_RUNTIME_BUG
from project_o.runtime.procctl import (
    exited_child,
    kill_group,
    set_child_subreaper,
    set_parent_death_signal,
)
from project_o.runtime.sandbox import apply_sandbox, private_tmp_path
from project_o.wire import FrameDecoder, Message, MessageType, encode_frame

__all__ = ["EXIT_IMPORT_FAILED", "Zygote", "enter_child", "enter_zygote", "main"]

#: exit status when the program failed to load (after the error frame)
EXIT_IMPORT_FAILED: Final = 1
# A fork request is a few hundred bytes; one recv takes many at once.
_RECV_CHUNK: Final = 64 * 1024
# Descriptors accepted per recvmsg: more than one fork's worth in flight.
_MAX_FDS: Final = 16
# The file that tells a vault (docs/design.md, "Vault"): one is never shown to agent code.
VAULT_CATALOG: Final = "catalog.sqlite"
# Strays killed and looked for again (one may fork as it is killed): a bound.
_STRAY_ROUNDS: Final = 8


class Zygote:
    """The zygote's loop; :meth:`serve` never returns."""

    def __init__(self, control: socket.socket, program: ChildProgram,
                 confinement: Confinement | None = None) -> None:
        self._control = control
        self._program = program
        self._confinement = confinement or Confinement(SandboxReport(enabled=False))
        self._decoder = FrameDecoder()
        self._fds: deque[int] = deque()
        self._children: dict[int, tuple[Any, dict[str, Any]]] = {}  # pid -> (id, report)
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)

    def serve(self) -> NoReturn:
        """Answer fork and kill requests and report exits until shutdown or EOF."""
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
            self._stop(0)  # the parent is gone: nothing to serve
        try:
            messages = self._decoder.feed(data)
        except ProtocolError as exc:
            self._stop(EXIT_PROTOCOL, f"bad frame from the parent: {exc}")
        for message in messages:
            self._on_message(message)

    def _on_message(self, message: Message) -> None:
        if message.type == MessageType.FORK:
            self._fork(message.data)
        elif message.type == MessageType.KILL:
            self._kill(message.data.get("id"))
        elif message.type == MessageType.SHUTDOWN:
            self._stop(0)
        else:
            self._stop(EXIT_PROTOCOL, f"the parent may not send {message.type!r} to a zygote")

    def _fork(self, request: dict[str, Any]) -> None:
        if not self._fds:
            self._stop(EXIT_PROTOCOL, "a fork request arrived without its descriptor")
        fd = self._fds.popleft()
        try:
            plan = self._program.plan(request)
            zygote_pid = os.getpid()
            pid = os.fork()
        except (InvalidArgument, OSError) as exc:
            os.close(fd)
            self._send(MessageType.ERROR, id=request.get("id"), kind=type(exc).__name__,
                       message=str(exc), traceback="")
            return
        if pid == 0:
            enter_child(self._program, plan, fd, zygote_pid, leave=self._forget_zygote_state,
                        confinement=self._confinement)
        os.close(fd)
        try:
            host_pid = self._confinement.host_pid(pid)
        except OSError as exc:
            # A pid the parent cannot use must never reach it (it would signal a
            # stranger): the child is killed, the fork refused.
            kill_group(pid)
            self._send(MessageType.ERROR, id=request.get("id"), kind=type(exc).__name__,
                       message=f"the child's pid could not be told: {exc}", traceback="")
            return
        self._children[pid] = (request.get("id"), {**plan.report, "pid": host_pid})
        self._send(MessageType.FORKED, id=request.get("id"), pid=host_pid)

    def _kill(self, child_id: Any) -> None:
        for pid, (owner, _) in self._children.items():
            if owner == child_id:  # still unreaped, so the group id is still its own
                kill_group(pid)

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
        child = self._children.pop(pid, None)
        if child is not None:
            kill_group(pid)
        _, status, usage = os.wait4(pid, 0)
        if child is None:
            return  # an orphan a child left behind: reaped, not reported
        self._kill_strays()
        if self._confinement.private_tmp:  # what it left in /tmp goes with it
            shutil.rmtree(private_tmp_path(pid), ignore_errors=True)
        code = os.waitstatus_to_exitcode(status)
        child_id, report = child
        self._send(
            MessageType.EXITED,
            **report,
            id=child_id,
            exit_code=code if code >= 0 else None,
            signal=-code if code < 0 else None,
            memory_kb=usage.ru_maxrss,
        )

    def _kill_strays(self) -> None:
        """SIGKILL what a dead child left behind (its descendants came to us).

        Each child is the reaper of its own descendants (a subreaper), so
        whatever reaches us was orphaned by a child that died: even one that
        called setsid() dies with the child it came from.
        """
        for _ in range(_STRAY_ROUNDS):
            strays = [pid for pid in _own_children() if pid not in self._children]
            if not strays:
                return
            for pid in strays:
                kill_group(pid)

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
        _send_quietly(self._control, message_type, **data)


def enter_zygote(parent_pid: int | None, policy: SandboxPolicy | None = None, *,
                 agent_paths: tuple[str, ...] = ()) -> Confinement:
    """The one way into a zygote, before it imports any agent or task code.

    Every process that runs agent code is a zygote or a child it forked,
    and children inherit what is set up here: confinement that must hold
    for all agent code, including what runs at import time, is applied
    here: the zygote dies with its parent (``parent_pid``, if it is already
    gone the zygote exits), reaps what its children orphan, and enters the
    sandbox ``policy`` asks for (:mod:`project_o.runtime.confine`; default:
    every layer the machine allows). ``agent_paths`` are the files the
    program will import (kept readable). The report says which layers hold.
    """
    set_parent_death_signal(signal.SIGKILL, expected_parent=parent_pid)
    confinement = confine(policy or SandboxPolicy(), agent_paths=agent_paths)
    set_child_subreaper()
    _report_limits(confinement)
    return confinement


def _report_limits(confinement: Confinement) -> None:
    report = confinement.report
    nproc = ", processes (RLIMIT_NPROC)" if confinement.own_pids else ""
    report.add("limits", True, "per child: address space, CPU time, open files, file size, "
               f"no core{nproc}; descendants die with their child (subreaper, group kill)")
    # Only the parent can make cgroups the zygote cannot write: it reports that layer
    # (see project_o.runtime.confine.cgroups); until it does, it is missing.
    report.add("cgroup", False, "made by the zygote's parent, which reports it")


def enter_child(
    program: ChildProgram, plan: ChildPlan, fd: int, zygote_pid: int, *,
    leave: Callable[[], None] = lambda: None, confinement: Confinement | None = None,
) -> NoReturn:
    """The one way into a child: sandbox it, then run its program; never returns.

    Every child of every zygote -- instance, evaluation batch, quick
    checks -- passes through here right after the fork, before its
    program runs: the per-child part of the sandbox (its own session,
    descriptors, rlimits, cgroup; see :mod:`project_o.runtime.sandbox`)
    is applied here and nowhere else. ``fd`` is the child's end of its
    channel to the parent; it ends up on fd 3. ``leave`` drops what the
    child inherited of the zygote's own state (its loop, its descriptors).
    It is born in its zygote's cgroup (the parent made room for it there).
    """
    code = EXIT_RUNTIME_BUG  # unless the program returns its own
    try:
        leave()
        if plan.output is not None:
            _redirect_output(plan.output)
        contained = confinement is not None and confinement.own_pids
        channel = apply_sandbox(fd, plan.limits, parent_pid=zygote_pid,
                                private_tmp=contained,
                                count_tasks=contained)
        code = program.run(plan, channel)
    except BaseException:  # noqa: BLE001 - whatever happens, never return into the zygote loop
        traceback.print_exc()
    finally:
        _flush_stdio()
        os._exit(code)


def _placed(fd: int) -> bool:
    """Wait for the parent's one byte saying this process is in its cgroup (the zygote)."""
    while True:
        try:
            return os.read(fd, 1) == b"\x01"
        except InterruptedError:
            continue


def _redirect_output(path: str) -> None:
    output = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(output, 1)
    os.dup2(output, 2)
    os.close(output)


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


def _parse(argv: Sequence[str] | None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(prog=f"python -m {ZYGOTE_MODULE}")
    parser.add_argument("--control-fd", type=int, required=True, help="inherited AF_UNIX socket")
    parser.add_argument(
        "--parent-pid",
        type=int,
        default=None,
        help="the parent's pid: exit at once if it is already gone",
    )
    parser.add_argument("--program", default=DEFAULT_PROGRAM,
                        help="MODULE:ATTR, a loader of the children's program")
    parser.add_argument("--sandbox", default=None,
                        help="the sandbox policy (JSON); default: every layer the machine allows")
    parser.add_argument("--cgroup-gate", action="store_true",
                        help="wait for one byte on the control socket first: the parent "
                        "moves this process into its cgroup meanwhile")
    return parser.parse_known_args(argv)


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """Entry point: load the program, say hello, serve forks."""
    args, program_args = _parse(argv)
    policy = SandboxPolicy.from_json(args.sandbox) if args.sandbox else SandboxPolicy()
    paths = _program_paths(program_args)
    parent_knows = os.getpid()
    if args.cgroup_gate and not _placed(args.control_fd):
        os._exit(0)  # the parent went away before it let us start
    confinement = enter_zygote(args.parent_pid, policy.with_paths(hidden=_vaults_around(paths)),
                               agent_paths=paths)
    control = socket.socket(fileno=args.control_fd)
    os.set_inheritable(args.control_fd, False)
    try:
        program = _load_program(args.program, program_args)
    except BaseException as exc:  # noqa: BLE001 - report any import failure, then exit
        failure = _import_failure(exc)
        missing = confinement.report.to_dict()["missing"]
        if missing:  # a layer that failed half-way may be why
            failure["message"] += f" (sandbox layers missing: {missing})"
        _send_quietly(control, MessageType.ERROR, **failure)
        os._exit(EXIT_IMPORT_FAILED)
    gc.collect()
    gc.freeze()
    _send_quietly(control, MessageType.HELLO, **program.hello(), pid=parent_knows,
                  host_pid=confinement.host_pid(os.getpid()),
                  sandbox=confinement.report.to_dict())
    Zygote(control, program, confinement).serve()


def _program_paths(args: Sequence[str]) -> tuple[str, ...]:
    """The files a program's command line names (``--agent``, ``--task``): kept readable."""
    paths: list[str] = []
    for flag, value in itertools.pairwise(args):
        if flag in ("--agent", "--task") and os.path.exists(value):
            path = os.path.realpath(value)
            paths.append(path if os.path.isdir(path) else os.path.dirname(path))
            paths += _linked_from(os.path.dirname(os.path.abspath(value)))
    return tuple(paths)


def _linked_from(directory: str) -> list[str]:
    """Directories that symbolic links beside the program's file point into (the
    referee's ``original_task.py``): the program reads through them."""
    linked = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(directory):
            if entry.is_symlink() and os.path.exists(entry.path):
                target = os.path.realpath(entry.path)
                linked.append(target if os.path.isdir(target) else os.path.dirname(target))
    return linked


def _vaults_around(paths: Sequence[str]) -> tuple[str, ...]:
    """Vaults holding the program's files (a version materialized in its vault): hidden."""
    vaults = []
    for path in paths:
        for parent in (path, *(str(p) for p in Path(path).parents)):
            if os.path.exists(os.path.join(parent, VAULT_CATALOG)):
                vaults.append(parent)
                break
    return tuple(vaults)


def _own_children() -> list[int]:
    """Our children's pids, from the kernel (``/proc/self/task/*/children``)."""
    pids: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{task}/children", "rb") as children:
                pids += [int(pid) for pid in children.read().split()]
    return pids


def _load_program(name: str, args: Sequence[str]) -> ChildProgram:
    if name == DEFAULT_PROGRAM:
        # Imported with the zygote, not through importlib: the import machinery's
        # garbage leaves holes in the heap that every instance then writes into
        # (copy-on-write), about 0.1 MB more private memory per instance.
        return instance_program.load(args)
    module, _, attr = name.partition(":")
    loader: ProgramLoader = getattr(importlib.import_module(module), attr or "load")
    return loader(args)


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
        pass  # the parent is gone; EOF on the next read ends the loop


if __name__ == "__main__":
    main()
