"""A parent's handle on one zygote (asyncio). It never imports agent code.

::

    ZygoteHandle.start(agent, version, env=...)        an agent's zygote (instances), or
    ZygoteHandle.start_program(program, args, env=...) any program (see runtime.zygote)
        socketpair ─► spawn `python -m project_o.runtime.zygote --control-fd N` (pass_fds)
        ◄── hello {pid, ...}                     or  error {message, traceback} ─► AgentLoadError

    await handle.fork(role, instance_id, limits, config)     an instance, or
    await handle.fork_child({...program's fields})           any program's child
        socketpair ─► fork {id, ...} + SCM_RIGHTS(the child's end)
        ◄── forked {id, pid} ─► ForkedInstance / ForkedChild(pid, reader, writer)

    ◄── exited {pid, exit_code, signal} ─► on_exit(data) and ForkedInstance.exited
    await handle.close() ─► shutdown, then SIGKILL if it lingers past the grace period

Only one coroutine writes to the control socket at a time (a lock), and
one task reads it. The zygote has imported agent code, so what it sends is
checked like an instance's: only its four types, each within its cap
(:data:`ZYGOTE_LIMITS`), and a ``forked`` pid must be a child of this
zygote (not the supervisor, the heart or another zygote's instance, which
a later kill of "its" process group would hit): its parent must be the
process that forks, which the hello names (``host_pid``: the started
process, or its one child, process 1 of the sandbox's PID namespace). A frame that breaks
either ends the zygote. If the zygote dies, pending forks fail with
:class:`~project_o.errors.ZygoteError` and every live instance's
``exited`` resolves with both ``exit_code`` and ``signal`` None: the
instances died with it (PR_SET_PDEATHSIG) and nobody could report how.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Self

import psutil

from project_o.errors import AgentLoadError, InvalidArgument, ProtocolError, ZygoteError
from project_o.runtime.child import DEFAULT_PROGRAM, zygote_command
from project_o.runtime.config import InstanceConfig
from project_o.runtime.confine import cgroups
from project_o.runtime.confine.policy import SandboxPolicy
from project_o.runtime.sandbox import Limits, with_package_path
from project_o.wire import FrameDecoder, FrameLimits, Message, MessageType, encode_frame

__all__ = [
    "DEFAULT_CLOSE_GRACE",
    "DEFAULT_FORK_TIMEOUT",
    "DEFAULT_START_TIMEOUT",
    "ZYGOTE_LIMITS",
    "ExitStatus",
    "ForkedChild",
    "ForkedInstance",
    "ZygoteHandle",
]

#: importing agent code may pull in heavy libraries; a minute covers most
DEFAULT_START_TIMEOUT: Final = 60.0
#: a fork answers in milliseconds; seconds mean the zygote is stuck
DEFAULT_FORK_TIMEOUT: Final = 10.0
#: how long a zygote may take to kill its instances and exit after shutdown
DEFAULT_CLOSE_GRACE: Final = 5.0
_RECV_CHUNK: Final = 64 * 1024
#: the parent's word to a zygote that waits to be placed in its cgroup
_GO: Final = b"\x01"
#: what a zygote may send: a hello (its program's fields) and an error (a
#: traceback) take a megabyte at most; forked and exited are a few numbers
ZYGOTE_LIMITS: Final = FrameLimits(
    {MessageType.HELLO: 1 << 20, MessageType.ERROR: 1 << 20,
     MessageType.FORKED: 64 << 10, MessageType.EXITED: 64 << 10},
    max_objects=100_000,
)

_log = logging.getLogger(__name__)

ExitCallback = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class ExitStatus:
    """How an instance ended, as its zygote reported it."""

    pid: int
    exit_code: int | None
    signal: int | None

    @property
    def description(self) -> str:
        """Human words: "exit code 3", "killed by SIGKILL", "lost with its zygote"."""
        if self.signal is not None:
            with contextlib.suppress(ValueError):
                return f"killed by {signal.strsignal(self.signal) or self.signal} ({self.signal})"
            return f"killed by signal {self.signal}"
        if self.exit_code is not None:
            return f"exit code {self.exit_code}"
        return "lost with its zygote"


@dataclass
class ForkedChild:
    """A freshly forked child of any program: its pid and the parent's end of its socket."""

    pid: int
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    exited: asyncio.Future[ExitStatus] = field(repr=False)


@dataclass
class ForkedInstance:
    """A freshly forked instance: its pid and the supervisor's end of its socket."""

    pid: int
    instance_id: str
    role: str
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    exited: asyncio.Future[ExitStatus] = field(repr=False)


class ZygoteHandle:
    """A running zygote: fork instances from it, hear when they exit, close it."""

    def __init__(
        self,
        process: asyncio.subprocess.Process,
        control: socket.socket,
        version: str,
        on_exit: ExitCallback | None,
        cgroup: cgroups.ZygoteCgroups | None = None,
    ) -> None:
        self._process = process
        #: the cgroup of the zygote and its children (made and kept here, never by the zygote)
        self.cgroups = cgroup or cgroups.ZygoteCgroups(None, (False, "not asked for"))
        self._sweeper: asyncio.Task[None] | None = None
        self._control = control
        self.version = version
        self.agent_name = ""
        #: the zygote's hello: its pid and its program's fields
        self.hello: dict[str, Any] = {}
        #: which sandbox layers hold in the zygote and its children, which not and why
        self.sandbox: dict[str, Any] = {}
        self._on_exit = on_exit
        loop = asyncio.get_running_loop()
        self._hello: asyncio.Future[dict[str, Any]] = loop.create_future()
        self._forks: dict[int, asyncio.Future[tuple[int, asyncio.Future[ExitStatus]]]] = {}
        self._instances: dict[int, asyncio.Future[ExitStatus]] = {}
        self._ids = itertools.count(1)
        self._send_lock = asyncio.Lock()
        self._lost: str | None = None
        #: the host pid of the process that forks the children (told in the hello)
        self._forker = process.pid
        self._gone: asyncio.Future[str] = loop.create_future()
        self._reader = loop.create_task(self._read_loop(), name=f"zygote-{process.pid}")

    # -- lifecycle ------------------------------------------------------

    @classmethod
    async def start(
        cls,
        agent_path: str | Path,
        version: str,
        *,
        env: Mapping[str, str],
        python: str = sys.executable,
        on_exit: ExitCallback | None = None,
        stderr: int | None = None,
        timeout: float = DEFAULT_START_TIMEOUT,
        sandbox: SandboxPolicy | None = None,
    ) -> ZygoteHandle:
        """Spawn a zygote for the agent at ``agent_path`` and wait for its hello.

        ``env`` is its whole environment (see
        :func:`project_o.runtime.sandbox.scrubbed_env`); ``sandbox`` the policy
        it confines itself with before importing the agent (default: every
        layer the machine allows; the hello's ``sandbox`` says which held). ``on_exit`` is
        called with each ``exited`` report. Raises
        :class:`~project_o.errors.AgentLoadError` (with the zygote's
        traceback) if the agent failed to import, ZygoteError if the zygote
        died or stayed silent for ``timeout`` seconds.
        """
        handle = await cls.start_program(
            DEFAULT_PROGRAM, ["--agent", str(agent_path), "--version", version], env=env,
            python=python, on_exit=on_exit, stderr=stderr, timeout=timeout,
            name=f"zygote for {agent_path}", sandbox=sandbox,
        )
        handle.version = version
        return handle

    @classmethod
    async def start_program(
        cls,
        program: str,
        args: list[str],
        *,
        env: Mapping[str, str],
        python: str = sys.executable,
        on_exit: ExitCallback | None = None,
        stderr: int | None = None,
        timeout: float = DEFAULT_START_TIMEOUT,
        name: str = "",
        sandbox: SandboxPolicy | None = None,
    ) -> ZygoteHandle:
        """Spawn a zygote running ``program`` (``MODULE:ATTR``) with ``args``; await its hello.

        Raises as :meth:`start` does; ``name`` says which zygote in errors.
        """
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        policy = sandbox or SandboxPolicy()
        host = cgroups.host() if policy.enabled else None
        gate = host is not None and host.available
        try:
            process = await asyncio.create_subprocess_exec(
                *zygote_command(program, args, theirs.fileno(), python=python,
                                sandbox=policy, cgroup_gate=gate),
                pass_fds=(theirs.fileno(),),
                env=with_package_path(env),
                stdin=asyncio.subprocess.DEVNULL,
                stderr=stderr,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        # The zygote waits for this word before it imports anything: by then it is
        # in its cgroup (or the report says why not).
        # Off the loop: a move into a v1 memory cgroup waits for an RCU grace period.
        try:
            placed = await asyncio.to_thread(cgroups.ZygoteCgroups.start, process.pid, host)
        except BaseException:  # cancelled: the zygote would wait for its word forever
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            ours.close()
            raise
        if gate:
            with contextlib.suppress(OSError):  # a zygote already dead: its hello never comes
                ours.sendall(_GO)
        ours.setblocking(False)
        handle = cls(process, ours, "", on_exit, placed)
        await handle._await_hello(name or f"zygote of {program}", timeout)
        return handle

    async def _await_hello(self, name: str, timeout: float) -> None:
        try:
            hello = await asyncio.wait_for(asyncio.shield(self._hello), timeout)
        except AgentLoadError:
            await self._terminate()
            raise
        except (ZygoteError, TimeoutError) as exc:
            await self._terminate()
            raise ZygoteError(
                f"{name} did not start ({_reason(exc)}); "
                f"exit status {self._process.returncode}; see its stderr"
            ) from exc
        self.agent_name = str(hello.get("agent", ""))
        self.hello = hello
        sandbox = hello.get("sandbox")
        self.sandbox = _with_layer(sandbox if isinstance(sandbox, dict) else {},
                                   "cgroup", *self.cgroups.layer, gaps=self.cgroups.gaps)

    @property
    def pid(self) -> int:
        """The zygote's process id."""
        return self._process.pid

    @property
    def alive(self) -> bool:
        """Whether the zygote is running and its control socket is open."""
        return self._lost is None and self._process.returncode is None

    def lost(self) -> asyncio.Future[str]:
        """Resolves, with why, once the zygote is gone (exited, or its channel broke)."""
        return self._gone

    @property
    def returncode(self) -> int | None:
        """The zygote's exit status once it has exited."""
        return self._process.returncode

    async def close(self, grace: float = DEFAULT_CLOSE_GRACE) -> None:
        """Ask the zygote to shut down (it kills its instances); SIGKILL it after ``grace``."""
        if self._process.returncode is None and self._lost is None:
            with contextlib.suppress(OSError, ZygoteError):
                await self._send(Message(MessageType.SHUTDOWN, {}))
        await self._terminate(grace)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _terminate(self, grace: float = DEFAULT_CLOSE_GRACE) -> None:
        try:
            await asyncio.wait_for(self._process.wait(), grace)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()
            await self._process.wait()
        # The exited reports sent before the zygote's end are still in the
        # socket: let the reader take them, then stop it.
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(self._reader), grace)
        self._reader.cancel()
        self._control.close()
        # Whatever the zygote or a child left behind dies here; killing and removing
        # waits for the processes to go (up to ~0.1 s), so not on the event loop.
        await asyncio.to_thread(self.cgroups.close)

    # -- forking --------------------------------------------------------

    async def fork(
        self,
        role: str,
        instance_id: str,
        limits: Mapping[str, Any] | None = None,
        config: Mapping[str, Any] | None = None,
        *,
        timeout: float = DEFAULT_FORK_TIMEOUT,
    ) -> ForkedInstance:
        """Fork an instance; return its pid and the supervisor's end of its socket.

        ``limits`` and ``config`` are checked here (InvalidArgument) before
        anything is sent. Raises ZygoteError if the zygote cannot fork.
        """
        child = await self.fork_child({
            "role": role,
            "instance_id": instance_id,
            "limits": Limits.from_dict(limits).to_dict(),
            "config": InstanceConfig.from_dict(config).to_dict(),
        }, timeout=timeout)
        return ForkedInstance(pid=child.pid, instance_id=instance_id, role=role,
                              reader=child.reader, writer=child.writer, exited=child.exited)

    async def fork_child(
        self, data: Mapping[str, Any], *, timeout: float = DEFAULT_FORK_TIMEOUT
    ) -> ForkedChild:
        """Fork a child of the zygote's program with the fork request's ``data``.

        Raises ZygoteError if the zygote cannot fork (or refused the request).
        """
        if not self.alive:
            raise ZygoteError(
                f"zygote {self.pid} is gone ({self._lost or 'exited'}); start a new one"
            )
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        quota = object()
        try:
            self._reserve(quota, data)
            pid, exited = await self._request_fork(dict(data), theirs, timeout)
        except BaseException:
            self.cgroups.release(quota)
            ours.close()
            raise
        finally:
            theirs.close()  # the zygote (and the child) hold their own copies
        self.cgroups.rename(quota, pid)
        if exited.done():
            self.cgroups.release(pid)  # it died before we knew its pid
        reader, writer = await asyncio.open_unix_connection(sock=ours)
        return ForkedChild(pid=pid, reader=reader, writer=writer, exited=exited)

    async def _request_fork(
        self, data: dict[str, Any], theirs: socket.socket, timeout: float
    ) -> tuple[int, asyncio.Future[ExitStatus]]:
        fork_id = next(self._ids)
        future = asyncio.get_running_loop().create_future()
        self._forks[fork_id] = future
        try:
            frame = encode_frame(Message(MessageType.FORK, {"id": fork_id, **data}))
            async with self._send_lock:
                await self._send_with_fd(frame, theirs.fileno())
            return await asyncio.wait_for(future, timeout)
        except TimeoutError as exc:
            raise ZygoteError(
                f"zygote {self.pid} did not answer fork {fork_id} within {timeout:g} s"
            ) from exc
        finally:
            self._forks.pop(fork_id, None)

    def _reserve(self, quota: object, data: Mapping[str, Any]) -> None:
        """Make room in the zygote's cgroup for the child about to be born there."""
        try:
            limits = Limits.from_dict(data.get("limits"))
        except InvalidArgument:
            limits = Limits()
        try:
            self.cgroups.reserve(quota, pids=limits.pids, memory=limits.memory_bytes)
        except OSError as exc:
            raise ZygoteError(f"zygote {self.pid}'s cgroup refused the child's quota: "
                              f"{exc}") from exc

    # -- the control socket ---------------------------------------------

    async def _send(self, message: Message) -> None:
        async with self._send_lock:
            await asyncio.get_running_loop().sock_sendall(self._control, encode_frame(message))

    async def _send_with_fd(self, frame: bytes, fd: int) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                # The descriptor travels with the first byte sent; the rest of
                # the frame (if the buffer was nearly full) follows plainly.
                sent = socket.send_fds(self._control, [frame], [fd])
                break
            except BlockingIOError:
                await self._writable(loop)
        if sent < len(frame):
            await loop.sock_sendall(self._control, frame[sent:])

    async def _writable(self, loop: asyncio.AbstractEventLoop) -> None:
        ready: asyncio.Future[None] = loop.create_future()
        loop.add_writer(self._control.fileno(), ready.set_result, None)
        try:
            await ready
        finally:
            loop.remove_writer(self._control.fileno())

    async def _read_loop(self) -> None:
        loop = asyncio.get_running_loop()
        decoder = FrameDecoder(limits=ZYGOTE_LIMITS)
        reason = "its control socket closed"
        try:
            while data := await loop.sock_recv(self._control, _RECV_CHUNK):
                for message in decoder.feed(data):
                    self._dispatch(message)
        except (ProtocolError, OSError) as exc:
            reason = f"its control channel broke: {exc}"
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()
        finally:
            self._on_lost(reason)

    def _dispatch(self, message: Message) -> None:
        data = message.data
        if message.type == MessageType.HELLO:
            if not self._hello.done():
                self._forker = self._check_forker(data.get("host_pid", self.pid))
            _resolve(self._hello, data)
        elif message.type == MessageType.FORKED:
            self._on_forked(data)
        elif message.type == MessageType.EXITED:
            self._on_exited(data)
        elif message.type == MessageType.ERROR:
            self._on_error(data)
        else:
            raise ProtocolError(f"a zygote may not send {message.type!r}")

    def _on_forked(self, data: dict[str, Any]) -> None:
        future, pid = self._forks.get(data.get("id")), data.get("pid")  # type: ignore[arg-type]
        if future is None or not isinstance(pid, int) or isinstance(pid, bool):
            raise ProtocolError(f"forked reply for no pending fork: {str(data)[:200]}")
        self._check_child(pid)
        # Registered here, not when fork() resumes: an instance that dies at
        # once may be reported before the awaiting coroutine runs again.
        exited: asyncio.Future[ExitStatus] = asyncio.get_running_loop().create_future()
        self._instances[pid] = exited
        _resolve(future, (pid, exited))

    def _check_forker(self, pid: Any) -> int:
        """The hello's ``host_pid``: the started process, or its child (a sandboxed
        zygote is process 1 of its own PID namespace, the started process waits outside)."""
        if not isinstance(pid, int) or isinstance(pid, bool):
            raise ProtocolError(f"the zygote's hello names no pid it forks from: {pid!r}")
        if pid != self.pid:
            with contextlib.suppress(psutil.NoSuchProcess):
                if psutil.Process(pid).ppid() == self.pid:
                    return pid
            raise ProtocolError(f"the zygote says it forks as pid {pid}, "
                                f"which is not process {self.pid} nor its child")
        return pid

    def _check_child(self, pid: int) -> None:
        """Refuse a ``forked`` pid that is not a child of the process that forks."""
        if pid <= 1 or pid in (os.getpid(), os.getppid(), self.pid, self._forker):
            raise ProtocolError(f"the zygote claims pid {pid} as its child")
        try:
            parent = psutil.Process(pid).ppid()
        except psutil.NoSuchProcess:
            return  # it died (and was reaped) already: there is nothing to kill
        if parent != self._forker:
            raise ProtocolError(f"the zygote claims pid {pid} as its child, but its parent "
                                f"is {parent}")

    def _on_exited(self, data: dict[str, Any]) -> None:
        pid = data.get("pid")
        if not isinstance(pid, int):
            raise ProtocolError(f"exited report without a pid: {data!r}")
        status = ExitStatus(
            pid, _int_or_none(data.get("exit_code")), _int_or_none(data.get("signal"))
        )
        future = self._instances.pop(pid, None)
        if future is not None:
            self.cgroups.release(pid)
            _resolve(future, status)
        self._notify(dict(data))

    async def _close_cgroups(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._process.wait(), DEFAULT_CLOSE_GRACE)
        await asyncio.to_thread(self.cgroups.close)

    def _on_error(self, data: dict[str, Any]) -> None:
        message = str(data.get("message", "unknown error"))
        future = self._forks.get(data.get("id"))  # type: ignore[arg-type]
        if future is not None:
            _fail(
                future,
                ZygoteError(
                    f"zygote {self.pid} could not fork: {data.get('kind', 'error')}: {message}"
                ),
            )
        elif not self._hello.done():
            self._hello.set_exception(AgentLoadError(message, str(data.get("traceback") or "")))
        else:
            raise ProtocolError(f"unexpected error report from the zygote: {message}")

    def _notify(self, data: dict[str, Any]) -> None:
        if self._on_exit is None:
            return
        try:
            self._on_exit(data)
        except Exception:  # noqa: BLE001 - a callback bug must not stop exit reports
            _log.exception("on_exit callback failed for %r", data)

    def _on_lost(self, reason: str) -> None:
        self._lost = reason
        # What outlived the zygote (a setsid() daemon) dies with its cgroup, once the
        # zygote's process has exited (it may still be reporting its own end).
        self._sweeper = asyncio.get_running_loop().create_task(self._close_cgroups())
        _resolve(self._gone, reason)
        error = ZygoteError(f"zygote {self.pid} is gone: {reason}")
        if not self._hello.done():
            self._hello.set_exception(error)
            self._hello.exception()  # retrieved: start() may have stopped waiting
        for future in self._forks.values():
            _fail(future, error)
        for pid, exited in self._instances.items():
            _resolve(exited, ExitStatus(pid, None, None))
        self._instances.clear()


def _with_layer(report: dict[str, Any], name: str, active: bool, detail: str, *,
                gaps: Mapping[str, str]) -> dict[str, Any]:
    """The zygote's sandbox report with the layer only the parent knows (its cgroup);
    ``gaps``: what that layer lacks although active (missing, so status shows it)."""
    if not report:
        return report
    layers = [layer for layer in report.get("layers", []) if layer.get("name") != name]
    layers.append({"name": name, "active": active, "detail": detail, "needed": True})
    active_names = [n for n in report.get("active", []) if n != name] + ([name] if active else [])
    missing = {n: why for n, why in report.get("missing", {}).items() if n != name}
    if not active:
        missing[name] = detail
    missing.update(gaps)
    return {**report, "active": active_names, "missing": missing, "layers": layers}


def _resolve(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


def _fail(future: asyncio.Future[Any], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _reason(exc: BaseException) -> str:
    return "no hello in time" if isinstance(exc, TimeoutError) else str(exc)


