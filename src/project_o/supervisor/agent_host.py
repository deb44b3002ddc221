"""Keeps one agent version serving: zygote, main, warm standby, routing.

::

            submit(input)
                 │             ┌──────── zygote (agent code imported once, gc.freeze())
                 ▼             │ fork          fork
           ┌──── main ◄────────┤
           │  wal_entry        └──► standby (restored, tails the WAL)
           ▼
        vault.append ──fsync──► wal_ack to main, wal_entry tail to standby

When the main dies (EOF on its socket, a protocol violation, missed
heartbeats, a blown deadline) the standby is promoted at once, requests in
flight are re-dispatched to it, and a fresh standby is forked. A request
that was being handled when two instances died in a row is a poison pill:
quarantined and answered with :class:`~project_o.errors.PoisonRequest`.

The host remembers which version answered each recent request, so that
feedback on it (:meth:`AgentHost.deliver_feedback`) names that version, and
counts what it does in :class:`~project_o.supervisor.metrics.SupervisorMetrics`.

Hot reload (:meth:`AgentHost.reload`, used by the arbiter to promote a
candidate or roll it back) swaps the version being served without losing
memory, because state is always checkpoint + WAL::

    stop routing ─► drain the old main ─► fork the new main from the new
    zygote, restore it from the vault ─► route to it ─► new standby ─►
    shut down the old main, standby and zygote

While a canary journals into the same WAL as the main, the main's
checkpoints are paused (:attr:`AgentHost.checkpoints_paused`): a
checkpoint of the main's state would claim to cover the canary's writes,
which the main never applied.

The supervisor never imports agent code: everything agent-shaped happens
in the zygote and the instances it forks.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psutil

from project_o.errors import (
    NoInstanceAvailable,
    PoisonRequest,
    ProjectOError,
    RequestFailed,
    RequestTimeout,
    ServiceError,
    WALFatalError,
)
from project_o.runtime.sandbox import scrubbed_env
from project_o.runtime.zygote_client import ZygoteHandle
from project_o.supervisor.api import EventSink, RequestResult
from project_o.supervisor.config import (
    POISON_THRESHOLD,
    STANDBY_RESPAWN_DELAY,
    SupervisorConfig,
)
from project_o.supervisor.events import EventLog
from project_o.supervisor.instance_handle import (
    HandlerError,
    InstanceDied,
    InstanceHandle,
)
from project_o.supervisor.instance_start import launch, send_restore
from project_o.supervisor.metrics import SupervisorMetrics
from project_o.supervisor.versions import VersionBook
from project_o.vault import Vault
from project_o.wire import Message

__all__ = ["AgentHost", "IntentListener"]

#: answers an ``evolution_intent`` frame's data with ``{experiment_id, status, reason}``
IntentListener = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]

#: longest pause between replacements once restart intensity is exceeded
MAX_BACKOFF = 5.0
#: operation names an instance may journal (anything else is a violation)
MAX_OPERATION_LENGTH = 128
#: answered requests whose version is remembered for feedback: at 100 requests
#: a second that is over a quarter of an hour, in about 20 MB at most
RECENT_ANSWERS = 100_000
#: how each failure shows on project_o_requests_total{outcome}
_OUTCOMES: dict[type[BaseException], str] = {
    RequestFailed: "failed", RequestTimeout: "timeout", PoisonRequest: "poison",
    NoInstanceAvailable: "unavailable", asyncio.CancelledError: "cancelled",
}


class AgentHost:
    """Runs one agent version: owns its zygote, main and standby instances."""

    def __init__(
        self, config: SupervisorConfig, vault: Vault, events: EventLog, version: str,
        book: VersionBook | None = None, metrics: SupervisorMetrics | None = None,
        fatal: asyncio.Future[BaseException] | None = None,
    ) -> None:
        self.config = config
        self.book = book
        self.metrics = metrics if metrics is not None else SupervisorMetrics()
        self._answered: OrderedDict[str, str] = OrderedDict()
        self._proven: set[str] = set()
        self._zygote_lock = asyncio.Lock()
        self.vault = vault
        self.events = events
        self.version = version
        self.main: InstanceHandle | None = None
        self.standby: InstanceHandle | None = None
        self.restarts = 0
        self.last_checkpoint: dict[str, Any] | None = None
        #: resolved with the error when the vault fails (the supervisor's tree escalates)
        self.fatal: asyncio.Future[BaseException] = (
            fatal if fatal is not None else asyncio.get_running_loop().create_future())
        self._zygote: ZygoteHandle | None = None
        self._main_ready = asyncio.Event()
        self._tails: dict[InstanceHandle, list[Message] | None] = {}
        self._restore_lock = asyncio.Lock()
        self._deaths: deque[float] = deque()
        self._kills_by_request: dict[str, int] = {}
        self._exits: dict[int, dict[str, Any]] = {}
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping = False
        #: instances of a version being replaced: they finish their requests, are not replaced
        self._retired: set[InstanceHandle] = set()
        self._reload_lock = asyncio.Lock()
        #: set while a canary journals into the same WAL (see the module docstring)
        self.checkpoints_paused = False
        #: where the main's ``evolution_intent`` frames go (the arbiter)
        self.on_intent: IntentListener | None = None

    # -- lifecycle ------------------------------------------------------

    async def start(self) -> None:
        """Start the zygote, the main and (if configured) the standby."""
        try:
            await self._ensure_zygote()
        except ProjectOError as exc:
            # New code that does not even import: run the last good version instead.
            if not await self._fall_back(f"failed to load: {exc}"):
                raise
            await self._ensure_zygote()
        assert self._zygote is not None
        self.events.record("start", self.version, "zygote ready", pid=self._zygote.pid)
        await self._become_main(await self._spawn("main"))
        if self.config.standby:
            self.standby = await self._spawn("standby")
        self._spawn_task(self._watchdog(), "watchdog")

    async def stop(self) -> None:
        """Final checkpoint from the main, then stop every process."""
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        if self.main is not None and self.main.alive:
            with contextlib.suppress(Exception):
                await self.request_checkpoint(self.main, timeout=10.0)
        for instance in (self.main, self.standby):
            if instance is not None:
                with contextlib.suppress(Exception):
                    await instance.send(Message("shutdown", {}))
                instance.kill("supervisor shutting down")
                await instance.close()
        if self._zygote is not None:
            await self._zygote.close()

    # -- serving --------------------------------------------------------

    async def submit(
        self, payload: Any, deadline_s: float | None = None, *,
        request_id: str | None = None, on_event: EventSink | None = None,
    ) -> RequestResult:
        """Answer one request, surviving instance deaths on the way.

        ``request_id`` must be unique (one is made if omitted); ``on_event``
        receives, in order, what the handler emits with ``ctx.emit``.
        """
        request_id = request_id or uuid.uuid4().hex
        started = time.perf_counter()
        try:
            output, served_by = await self._serve(request_id, payload, deadline_s, on_event)
        except (ServiceError, asyncio.CancelledError) as exc:
            error = type(exc).__name__ if isinstance(exc, ServiceError) else None
            self.metrics.observe_request(self.version, "main", _outcome(exc),
                                         time.perf_counter() - started, error)
            raise
        seconds = time.perf_counter() - started
        self.metrics.observe_request(served_by.version, served_by.role, "ok", seconds)
        return RequestResult(request_id, output, served_by.version, seconds * 1000)

    async def _serve(
        self, request_id: str, payload: Any, deadline_s: float | None,
        on_event: EventSink | None,
    ) -> tuple[Any, InstanceHandle]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (deadline_s or self.config.request_deadline)
        while True:
            main = await self._wait_for_main(deadline - loop.time())
            try:
                output = await asyncio.wait_for(
                    main.request(request_id, payload, deadline - loop.time(), on_event),
                    max(0.0, deadline - loop.time()),
                )
            except InstanceDied as died:
                self._blame(request_id, main, died.reason)
                continue
            except TimeoutError:
                self._on_deadline(request_id, main)
                raise RequestTimeout(
                    f"request {request_id} got no answer within its deadline",
                    request_id=request_id,
                ) from None
            except HandlerError as exc:
                self._remember(request_id, main.version)  # an answer too: it may be rated
                raise RequestFailed(exc.kind, exc.message, request_id=request_id,
                                    traceback=exc.traceback) from exc
            self._kills_by_request.pop(request_id, None)
            self._prove(main.version)
            self._remember(request_id, main.version)
            return output, main

    def remember(self, request_id: str, version: str) -> None:
        """Record that ``version`` answered ``request_id`` (for feedback on it)."""
        self._remember(request_id, version)

    def trust(self, version: str) -> None:
        """Do not re-mark ``version`` "good" when it answers (the arbiter owns its status)."""
        self._proven.add(version)

    def _remember(self, request_id: str, version: str) -> None:
        self._answered[request_id] = version
        if len(self._answered) > RECENT_ANSWERS:
            self._answered.popitem(last=False)

    def version_of(self, request_id: str) -> str | None:
        """The version that answered ``request_id``, if it was answered recently."""
        return self._answered.get(request_id)

    async def deliver_feedback(self, feedback: dict[str, Any]) -> str | None:
        """Run the main's feedback hooks on ``feedback``; None once they ran, else why not.

        At most once: if the main dies meanwhile the feedback is not sent again
        (it may be what killed it). It waits behind the requests the main is
        serving, for at most a request's deadline.
        """
        timeout = self.config.request_deadline
        try:
            main = await self._wait_for_main(timeout)
            reports = await asyncio.wait_for(
                main.feedback(f"feedback-{uuid.uuid4().hex}", feedback), timeout)
        except (NoInstanceAvailable, RequestTimeout):
            return "no instance of the agent was ready to take it"
        except TimeoutError:
            return f"the feedback hooks did not finish within {timeout:g} s; they may still run"
        except InstanceDied as died:
            return f"the instance died before its feedback hooks finished: {died.reason}"
        except HandlerError as exc:
            return f"the agent refused the feedback: {exc.kind}: {exc.message}"
        failed = _failed_hooks(reports)
        if not failed:
            return None
        self.events.record("feedback_hook_failed", str(feedback.get("request_id")),
                           "; ".join(failed), version=main.version)
        return f"feedback hooks raised: {'; '.join(failed)}"

    async def _wait_for_main(self, remaining: float) -> InstanceHandle:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + remaining
        # A loop: the main can die again between the event firing and us waking.
        while self.main is None or not self.main.alive:
            left = deadline - loop.time()
            if left <= 0:
                raise RequestTimeout("the deadline passed before an instance was ready")
            try:
                await asyncio.wait_for(self._main_ready.wait(), left)
            except TimeoutError:
                raise NoInstanceAvailable(
                    "no instance of the agent is ready; it is restarting — retry shortly"
                ) from None
        return self.main

    def _blame(self, request_id: str, instance: InstanceHandle, reason: str) -> None:
        """Count a death against the request the instance was working on."""
        if instance.culprit != request_id:
            return  # it was queued behind the request that killed the instance
        if not self._zygote_running():
            return  # its zygote died and took it along (PR_SET_PDEATHSIG): not the request
        kills = self._kills_by_request.get(request_id, 0) + 1
        self._kills_by_request[request_id] = kills
        if kills >= POISON_THRESHOLD:
            self._kills_by_request.pop(request_id, None)
            self.events.record("quarantine", request_id, f"killed {kills} instances in a row: "
                               f"{reason}", version=self.version)
            raise PoisonRequest(
                f"request {request_id} was quarantined: it killed {kills} instances in a "
                f"row (last: {reason}); the agent keeps serving other requests"
            )

    def _zygote_running(self) -> bool:
        """The zygote is alive, checked with the kernel (our own EOF may still be queued)."""
        zygote = self._zygote
        if zygote is None or not zygote.alive:
            return False
        try:
            return bool(psutil.Process(zygote.pid).status() != psutil.STATUS_ZOMBIE)
        except psutil.NoSuchProcess:
            return False

    def _on_deadline(self, request_id: str, instance: InstanceHandle) -> None:
        if instance.alive and instance.in_flight[:1] == [request_id]:
            # The instance is stuck on this very request: free it for everyone else.
            instance.kill(f"request {request_id} exceeded its deadline")

    # -- replacing the dead ---------------------------------------------

    def on_death(self, instance: InstanceHandle, reason: str) -> None:
        """Called by the handle the moment an instance is known dead."""
        self._tails.pop(instance, None)
        if instance in self._retired:
            return  # a version being replaced: nothing to replace it with
        was_main = instance is self.main
        if was_main:
            # Synchronously, so no request is routed to the corpse meanwhile.
            self.main = None
            self._main_ready.clear()
        elif instance is self.standby:
            self.standby = None
        if self._stopping:
            return
        self._spawn_task(self._replace(instance, reason, was_main), f"replace-{instance.instance_id}")

    async def _replace(self, dead: InstanceHandle, reason: str, was_main: bool) -> None:
        self._spawn_task(self._record_death(dead, reason), "record-death")
        self.restarts += 1
        if was_main:
            standby, self.standby = self.standby, None
            if standby is not None and standby.alive:
                await self._become_main(standby)
                self.events.record("takeover", standby.instance_id,
                                   f"standby promoted after {dead.instance_id} died")
            else:
                await self._respawn("main")
        await dead.close()
        if self.config.standby and self.standby is None and not self._stopping:
            await asyncio.sleep(STANDBY_RESPAWN_DELAY)
            await self._respawn("standby")

    async def _respawn(self, role: str) -> None:
        await self._backoff()
        while not self._stopping:
            try:
                await self._ensure_zygote()
                instance = await self._spawn(role)
            except (ProjectOError, OSError, TimeoutError) as exc:
                self.events.record("spawn_failed", role, str(exc), version=self.version)
                await self._backoff()
                continue
            await self._place(instance)
            return

    async def _place(self, instance: InstanceHandle) -> None:
        """Give a fresh instance the slot it is needed in (replacements can race)."""
        if self.main is None:
            await self._become_main(instance)
        elif instance.role == "standby" and self.standby is None:
            self.standby = instance
        else:
            instance.kill("not needed: another replacement filled the slot")
            await instance.close()

    # -- hot reload -----------------------------------------------------

    async def reload(self, agent: Path, version: str, reason: str) -> None:
        """Serve ``version`` (the agent at ``agent``) instead of the current one.

        Memory is intact: the new main restores from the vault (checkpoint +
        WAL) after the old main drained. If the new version fails to start,
        the old one keeps serving and the error propagates.
        """
        async with self._reload_lock:
            same = version == self.version and self._zygote is not None and self._zygote.alive
            zygote = self._zygote if same else await ZygoteHandle.start(
                agent, version, env=self._instance_env(), on_exit=self._on_exit)
            assert zygote is not None
            old = (self.main, self.standby, self._zygote, self.config.agent, self.version)
            self._retired.update(i for i in old[:2] if i is not None)
            self.main, self.standby = None, None
            self._main_ready.clear()  # new requests wait for the new main
            if old[0] is not None:
                await self._drain(old[0])
            self._zygote, self.config.agent, self.version = zygote, agent, version
            try:
                await self._become_main(await self._spawn("main"))
            except BaseException:
                await self._undo_reload(old, zygote)
                raise
            self.events.record("reload", version, reason, previous=old[4])
            await self._retire(old[0], old[1], None if same else old[2])
            if self.config.standby and self.standby is None:
                self._spawn_task(self._respawn("standby"), "standby-after-reload")

    async def _drain(self, instance: InstanceHandle) -> None:
        """Wait (up to a request deadline) for ``instance`` to finish what it serves."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.request_deadline
        while instance.alive and instance.in_flight and loop.time() < deadline:
            await asyncio.sleep(0.005)

    async def _undo_reload(self, old: tuple[Any, ...], zygote: ZygoteHandle) -> None:
        main, standby, old_zygote, agent, version = old
        if zygote is not old_zygote:
            await zygote.close()
        self._zygote, self.config.agent, self.version = old_zygote, agent, version
        self._retired.difference_update({main, standby})
        self.standby = standby if standby is not None and standby.alive else None
        if main is not None and main.alive:
            await self._become_main(main)
        else:
            self._spawn_task(self._respawn("main"), "main-after-failed-reload")

    async def _retire(self, main: InstanceHandle | None, standby: InstanceHandle | None,
                      zygote: ZygoteHandle | None) -> None:
        for instance in (main, standby):
            if instance is None:
                continue
            with contextlib.suppress(Exception):
                await instance.send(Message("shutdown", {}))
            instance.kill("replaced by a hot reload")
            await instance.close()
            self._retired.discard(instance)
        if zygote is not None:
            await zygote.close()

    def listen_intents(self, listener: IntentListener) -> None:
        """Send the main's ``evolution_intent`` frames to ``listener`` from now on."""
        self.on_intent = listener
        if self.main is not None and self.main.alive:
            self._spawn_task(self._listen_intents(self.main), f"intents-{self.main.instance_id}")

    async def send_to_main(self, message: Message) -> bool:
        """Send ``message`` to the main if there is one; whether it was sent."""
        main = self.main
        if main is None or not main.alive:
            return False
        try:
            await main.send(message)
        except InstanceDied:
            return False
        return True

    async def _listen_intents(self, instance: InstanceHandle) -> None:
        """Answer the main's ``evolution_intent`` frames, one at a time.

        The instance waits for the answer before it may send the next intent,
        so the waiter is always registered again before the next one arrives.
        """
        while instance.alive and instance is self.main and self.on_intent is not None:
            waiter = instance.waiter("evolution_intent")
            try:
                message = await waiter
            except InstanceDied:
                return
            try:
                answer = await self.on_intent(dict(message.data))
            except Exception as exc:  # noqa: BLE001 - the agent gets the reason, we go on
                answer = {"experiment_id": None, "status": "rejected", "reason": str(exc)}
            with contextlib.suppress(InstanceDied):
                await instance.send(Message("evolution_result",
                                            {"id": message.data.get("id"), **answer}))

    @property
    def restore_lock(self) -> asyncio.Lock:
        """Held while an instance reads a checkpoint, so none is pruned meanwhile."""
        return self._restore_lock

    def zygote_env(self) -> dict[str, str]:
        """The environment a zygote of this agent runs with (for candidate zygotes)."""
        return self._instance_env()

    def _instance_env(self) -> dict[str, str]:
        """The scrubbed environment agent code runs with, plus the LLM settings if any."""
        llm = self.config.llm
        return scrubbed_env(extra=llm.to_env() if llm is not None else None)

    async def _ensure_zygote(self) -> None:
        """Start a new zygote if there is none or it died (its instances died with it)."""
        async with self._zygote_lock:
            if self._zygote is not None:
                if self._zygote.alive:
                    return
                self.events.record("crash", "zygote", "the zygote died; starting a new one")
            self._zygote = await ZygoteHandle.start(
                self.config.agent, self.version, env=self._instance_env(), on_exit=self._on_exit,
            )

    async def _backoff(self) -> None:
        """Restart intensity: past the limit, slow down instead of crash-looping."""
        now = time.monotonic()
        self._deaths.append(now)
        while self._deaths and now - self._deaths[0] > self.config.restart_period:
            self._deaths.popleft()
        excess = len(self._deaths) - self.config.max_restarts
        if excess > 0 and await self._fall_back(
            f"{len(self._deaths)} restarts in {self.config.restart_period:g} s"
        ):
            return
        if excess > 0:
            delay = min(MAX_BACKOFF, 0.05 * 2 ** min(excess, 10))
            self.events.record("escalate", self.version,
                               f"{len(self._deaths)} restarts in {self.config.restart_period:g} s "
                               f"exceed the limit of {self.config.max_restarts}; "
                               f"backing off {delay:.2f} s", version=self.version)
            await asyncio.sleep(delay)

    def _prove(self, version: str) -> None:
        """Mark a version good once it has answered a request."""
        if version in self._proven or self.book is None:
            return
        self._proven.add(version)
        self._spawn_task(asyncio.to_thread(self.book.mark_good, version), "mark-good")

    async def _fall_back(self, reason: str) -> bool:
        """Escalation: give up on this version and run the previous good one."""
        if self.book is None:
            return False
        previous = await asyncio.to_thread(self.book.previous_good, self.version)
        if previous is None:
            return False
        await asyncio.to_thread(self.book.reject, self.version, reason)
        agent = await asyncio.to_thread(self.book.materialize, previous)
        self.events.record("fallback", self.version, f"giving up on version {self.version} "
                           f"({reason}); falling back to {previous.id}", to=previous.id)
        old, self._zygote = self._zygote, None
        self.config.agent, self.version = agent, previous.id
        self._deaths.clear()
        if self.standby is not None:
            self.standby.kill("its version was given up")
        if old is not None:
            await old.close()  # its instances die with it
        return True

    async def _record_death(self, dead: InstanceHandle, reason: str) -> None:
        # The zygote reports how the process ended a moment after the EOF.
        for _ in range(20):
            if dead.pid in self._exits:
                break
            await asyncio.sleep(0.01)
        how = self._exits.pop(dead.pid, {})
        kind = "hang" if reason.startswith("hang") else "crash"
        if how.get("signal"):
            reason = f"{reason}; killed by signal {how['signal']}"
        elif how.get("exit_code") is not None:
            reason = f"{reason}; exit code {how['exit_code']}"
        self.events.record(kind, dead.instance_id, reason, pid=dead.pid, role=dead.role,
                           version=dead.version)

    def _on_exit(self, info: dict[str, Any]) -> None:
        pid = info.get("pid")
        if isinstance(pid, int):
            self._exits[pid] = info

    async def _become_main(self, instance: InstanceHandle) -> None:
        if instance.role != "main":
            instance.role = "main"
            self._tails.pop(instance, None)
            await instance.send(Message("promote", {"role": "main"}))
        self.main = instance
        self._main_ready.set()
        if self.on_intent is not None:
            self._spawn_task(self._listen_intents(instance), f"intents-{instance.instance_id}")

    # -- spawning and restoring -----------------------------------------

    async def _spawn(self, role: str) -> InstanceHandle:
        assert self._zygote is not None
        instance = await launch(
            self._zygote, role=role, instance_id=f"{role}-{next(self._ids)}",
            version=self.version, owner=self, limits=self.config.limits,
            config=self.config.instance_config(), max_frame_size=self.config.max_frame_bytes,
            restore=self._restore,
        )
        instance.restarts = self.restarts
        return instance

    async def _restore(self, instance: InstanceHandle) -> None:
        if instance.role != "main":
            self._tails[instance] = []  # buffer tails while it restores
        async with self._restore_lock:  # no checkpoint is pruned while one is read
            point = await asyncio.to_thread(self.vault.recover)
            await send_restore(instance, point)
        buffered = self._tails.get(instance)
        if buffered is not None:
            self._tails[instance] = None
            for tail in buffered:
                if tail.data["sequence"] > point.last_sequence:
                    await instance.send(tail)

    async def request_checkpoint(self, instance: InstanceHandle, timeout: float) -> None:
        """Ask ``instance`` for its state and write it (before risk, at shutdown)."""
        done = instance.waiter("checkpoint_sent")
        await instance.send(Message("checkpoint", {"id": uuid.uuid4().hex}))
        await asyncio.wait_for(done, timeout)

    # -- what instances send ---------------------------------------------

    async def on_wal_entry(self, instance: InstanceHandle, message: Message) -> None:
        """Journal a memory write from the main, ack it, tail it to the standby."""
        data = message.data
        operation, request_id = data.get("operation"), data.get("id")
        if instance is not self.main and instance not in self._retired:
            instance.kill(f"protocol violation: {instance.role} may not write to the vault")
            return
        if not isinstance(operation, str) or not 0 < len(operation) <= MAX_OPERATION_LENGTH:
            instance.kill("protocol violation: wal_entry needs a short string operation")
            return
        started = time.perf_counter()
        try:
            sequence = await self.vault.append_async(operation, data.get("data"))
        except WALFatalError as exc:
            if not self.fatal.done():
                self.fatal.set_result(exc)
            instance.kill("the vault failed; nothing more can be acknowledged")
            return
        self.metrics.observe_wal_append(time.perf_counter() - started)
        with contextlib.suppress(InstanceDied):
            await instance.send(Message("wal_ack", {"id": request_id, "sequence": sequence}))
        await self._tail(Message("wal_entry", {
            "sequence": sequence, "operation": operation, "data": data.get("data"),
        }))

    async def _tail(self, entry: Message) -> None:
        for follower, buffer in list(self._tails.items()):
            if buffer is not None:
                buffer.append(entry)
                continue
            with contextlib.suppress(InstanceDied):
                await follower.send(entry)

    async def on_checkpoint(self, instance: InstanceHandle, message: Message) -> None:
        """Write the main's state as a checkpoint, then acknowledge it."""
        data = message.data
        state, covered = data.get("state"), data.get("last_sequence")
        if instance is not self.main:
            return  # only the main's state is the agent's state
        if self.checkpoints_paused:
            # A canary journals into the same WAL: this state lacks its writes.
            instance.notify("checkpoint_sent", message)
            return
        if not isinstance(state, dict) or not isinstance(covered, int) or not (
            0 <= covered <= self.vault.last_sequence
        ):
            instance.kill("protocol violation: malformed checkpoint")
            return
        async with self._restore_lock:
            info = await self.vault.checkpoint_async(state, last_sequence=covered)
        self.metrics.checkpoint_written()
        self.last_checkpoint = {"id": str(info.id), "last_sequence": info.last_sequence,
                                "timestamp_ns": info.timestamp_ns}
        with contextlib.suppress(InstanceDied):
            await instance.send(Message("checkpoint_ack", {
                "id": data.get("id"), "checkpoint_id": str(info.id), "last_sequence": covered,
            }))
        instance.notify("checkpoint_sent", message)

    # -- health ---------------------------------------------------------

    async def _watchdog(self) -> None:
        """Kill instances whose heartbeats stopped (a hung handler, a deadlock)."""
        period = min(self.config.heartbeat_interval, self.config.heartbeat_timeout) / 2
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for instance in (self.main, self.standby):
                if instance is not None:
                    instance.kill_if_silent(self.config.heartbeat_timeout, now)

    def describe_tree(self) -> dict[str, Any]:
        """This host as a node of the supervision tree: its zygote and instances."""
        zygote = self._zygote
        children: list[dict[str, Any]] = [{
            "id": "zygote", "pid": zygote.pid if zygote is not None else None,
            "status": "running" if zygote is not None and zygote.alive else "stopped",
        }]
        children += [{"id": i.role, "pid": i.pid, "status": "running", "instance_id": i.instance_id,
                      "version": i.version} for i in (self.main, self.standby)
                     if i is not None and i.alive]
        return {"version": self.version, "instance_restarts": self.restarts,
                "max_restarts": self.config.max_restarts,
                "max_seconds": self.config.restart_period, "children": children}

    def describe(self) -> list[dict[str, Any]]:
        """Live instances for `GET /v1/status`."""
        return [i.describe() for i in (self.main, self.standby) if i is not None and i.alive]

    def _spawn_task(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _outcome(exc: BaseException) -> str:
    """The ``outcome`` label for a request that ended with ``exc``."""
    return next((name for kind, name in _OUTCOMES.items() if isinstance(exc, kind)), "failed")


def _failed_hooks(reports: Any) -> list[str]:
    """``hook: Type: message`` for each failed hook in an instance's feedback reports."""
    if not isinstance(reports, list):
        return []
    failed = []
    for report in reports:
        if isinstance(report, dict) and report.get("ok") is False:
            error = report.get("error")
            what = f"{error.get('type')}: {error.get('message')}" if isinstance(error, dict) else "?"
            failed.append(f"{report.get('hook')}: {what}")
    return failed
