"""Keeps one agent version serving: zygote, main, warm standby, routing.

::

            submit(input)
                 │             ┌──────── zygote (agent code imported once, gc.freeze())
                 ▼             │ fork          fork
           ┌──── main ◄────────┤
           │  wal_entry        └──► standby (restored, tails the WAL)
           ▼
        vault.append ──fsync──► wal_ack to main, wal_entry tail to standby

The host is the agent's node of the supervision tree (agent -> zygote,
main, standby) and is put together from parts, one concept each:

=========================================  ==========================================
:class:`~.instance_pool.InstancePool`      the main and standby slots, the main's readiness
:class:`~.instance_factory.InstanceFactory`  the zygote, forking and restoring instances
:class:`~.replacement.Replacer`            takeover, respawn, fall back (on the death of one)
:class:`~.restart_policy.RestartPolicy`    restart intensity (the tree's ``RestartIntensity``)
:class:`~.hot_reload.HotReload`            serving another version without losing memory
:class:`~.dispatch.Dispatcher`             a request's path: main, re-dispatch on a death, deadline
:class:`~.poison.PoisonTracker`            quarantining requests that kill instance after instance
:class:`~.answers.AnswerBook`              which version answered what (for feedback)
:func:`~.feedback_delivery.deliver_feedback`  the agent's feedback hooks, at most once
:func:`~.intents.relay_intents`            the main's ``ctx.evolve`` intents to the arbiter
:class:`~.nursery.Nursery`                 owns every task the host runs (one TaskGroup)
=========================================  ==========================================

When the main dies (EOF on its socket, a protocol violation, missed
heartbeats, a blown deadline) the standby is promoted at once, requests in
flight are re-dispatched to it, and a fresh standby is forked. A request
that was being handled when two instances died in a row is a poison pill:
quarantined and answered with :class:`~project_o.errors.PoisonRequest`.

A canary's writes never enter the main's WAL before promotion (they go to
an overlay, see :mod:`project_o.supervisor.candidate`), so the main's
checkpoints always cover exactly the main's memory.

The supervisor never imports agent code: everything agent-shaped happens
in the zygote and the instances it forks.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from project_o.errors import (
    ProjectOError,
    WALFatalError,
)
from project_o.supervisor.answers import RECENT_ANSWERS, AnswerBook
from project_o.supervisor.api import EventSink, RequestResult
from project_o.supervisor.config import POISON_THRESHOLD, SupervisorConfig
from project_o.supervisor.dispatch import Dispatcher
from project_o.supervisor.events import EventLog
from project_o.supervisor.feedback_delivery import deliver_feedback
from project_o.supervisor.hot_reload import HotReload
from project_o.supervisor.instance_factory import InstanceFactory
from project_o.supervisor.instance_handle import (
    InstanceDied,
    InstanceHandle,
)
from project_o.supervisor.instance_pool import InstancePool
from project_o.supervisor.intents import IntentListener, relay_intents
from project_o.supervisor.journal import Journal
from project_o.supervisor.llm_proxy import LLMProxy
from project_o.supervisor.metrics import SupervisorMetrics
from project_o.supervisor.nursery import Nursery
from project_o.supervisor.poison import PoisonTracker
from project_o.supervisor.replacement import Replacer
from project_o.supervisor.restart_policy import RestartPolicy
from project_o.supervisor.versions import VersionBook
from project_o.vault import Vault
from project_o.wire import Message

__all__ = ["RECENT_ANSWERS", "AgentHost", "IntentListener"]



class AgentHost:
    """Runs one agent version: owns its zygote, main and standby instances."""

    def __init__(
        self, config: SupervisorConfig, vault: Vault, events: EventLog, version: str,
        book: VersionBook | None = None, metrics: SupervisorMetrics | None = None,
        fatal: asyncio.Future[BaseException] | None = None, *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        make_factory: Callable[..., InstanceFactory] = InstanceFactory,
    ) -> None:
        """``clock``, ``sleep`` and ``make_factory`` are for tests (a fake clock, fake forks)."""
        self.config = config
        self.vault = vault
        self.events = events
        self.book = book
        self.metrics = metrics if metrics is not None else SupervisorMetrics()
        #: resolved with the error when the vault fails (the supervisor's tree escalates)
        self.fatal: asyncio.Future[BaseException] = (
            fatal if fatal is not None else asyncio.get_running_loop().create_future())
        #: the durable write path of the main, the standby's tail and a canary
        self.journal = Journal(vault, self.metrics, self._vault_failed)
        #: where the main's ``evolution_intent`` frames go (the arbiter)
        self.on_intent: IntentListener | None = None
        self._tasks = Nursery("agent host")
        #: makes the model calls of every instance (main, standby, candidates): the key stays here
        self.llm = LLMProxy(config.llm, self._tasks.spawn, metrics=self.metrics,
                            catalog=lambda: vault.catalog, prices=config.llm_prices)
        self._pool = InstancePool()
        self._factory = make_factory(config, version, events, self, self._restore)
        self._policy = RestartPolicy(config.max_restarts, config.restart_period, clock=clock)
        self._replacer = Replacer(config, self._pool, self._factory, self._policy, events, book,
                                  self._promote, sleep=sleep)
        self._reloads = HotReload(self._pool, self._factory, events, promote=self._promote,
                                  respawn_later=self._respawn_later,
                                  drain_timeout=config.request_deadline, standby=config.standby)
        self._answers = AnswerBook()
        self._dispatcher = Dispatcher(
            self._pool, self._factory, events, self.metrics, self._answers,
            PoisonTracker(POISON_THRESHOLD), default_deadline=config.request_deadline,
            on_answer=self._prove,
        )

    # -- what the rest of the supervisor reads ---------------------------

    @property
    def main(self) -> InstanceHandle | None:
        """The instance serving requests, if one is."""
        return self._pool.main

    @property
    def standby(self) -> InstanceHandle | None:
        """The warm standby, if there is one."""
        return self._pool.standby

    @property
    def version(self) -> str:
        """The version being served."""
        return self._factory.version

    @property
    def restarts(self) -> int:
        """Instances replaced since the host started."""
        return self._factory.restarts

    @property
    def failed(self) -> asyncio.Future[BaseException]:
        """Resolves if a task of the host failed (a bug): the supervisor's tree escalates."""
        return self._tasks.failed

    @property
    def restore_lock(self) -> asyncio.Lock:
        """Held while an instance reads a checkpoint, so none is pruned meanwhile."""
        return self.journal.restore_lock

    @property
    def _retired(self) -> set[InstanceHandle]:
        return self._pool.retired

    # -- lifecycle ------------------------------------------------------

    async def start(self) -> None:
        """Start the zygote, the main and (if configured) the standby."""
        await self._tasks.open()
        try:
            await self._start_instances()
        except BaseException:
            await self.stop()
            raise
        config = self.config
        self._tasks.spawn(self._pool.watch(config.heartbeat_interval, config.heartbeat_timeout),
                          "watchdog")

    async def _start_instances(self) -> None:
        factory = self._factory
        try:
            await factory.ensure_zygote()
        except ProjectOError as exc:
            # New code that does not even import: run the last good version instead.
            if not await self._replacer.fall_back(f"failed to load: {exc}"):
                raise
            await factory.ensure_zygote()
        assert factory.zygote is not None
        self.events.record("start", self.version, "zygote ready", pid=factory.zygote.pid)
        await self._promote(await factory.spawn("main"))
        if self.config.standby:
            self._pool.standby = await factory.spawn("standby")

    async def stop(self) -> None:
        """Final checkpoint from the main, then stop every process."""
        self._replacer.stopping = True
        await self._tasks.close()  # replacements, watchdog, intent relays: cancelled, awaited
        self.llm.close()
        main = self._pool.main
        if main is not None and main.alive:
            with contextlib.suppress(Exception):
                await self.request_checkpoint(main, timeout=10.0)
        for instance in (main, self._pool.standby):
            if instance is not None:
                with contextlib.suppress(Exception):
                    await instance.send(Message("shutdown", {}))
                instance.kill("supervisor shutting down")
                await instance.close()
        await self._factory.close()

    # -- serving --------------------------------------------------------

    async def submit(
        self, payload: Any, deadline_s: float | None = None, *,
        request_id: str | None = None, on_event: EventSink | None = None,
    ) -> RequestResult:
        """Answer one request, surviving instance deaths on the way.

        ``request_id`` must be unique (one is made if omitted); ``on_event``
        receives, in order, what the handler emits with ``ctx.emit``.
        """
        return await self._dispatcher.submit(payload, deadline_s, request_id=request_id,
                                             on_event=on_event)

    def _prove(self, version: str) -> None:
        """Mark a version good in the catalog once it has answered a request."""
        if self.book is not None and self._answers.prove(version) and self._tasks.open_for_tasks:
            self._tasks.spawn(self._mark_good(self.book, version), f"mark-good-{version}")

    async def _mark_good(self, book: VersionBook, version: str) -> None:
        try:
            await asyncio.to_thread(book.mark_good, version)
        except ProjectOError as exc:  # the catalog said no: worth an event, not the host
            self.events.record("mark_good_failed", version, str(exc), version=version)

    # -- feedback -------------------------------------------------------

    def remember(self, request_id: str, version: str) -> None:
        """Record that ``version`` answered ``request_id`` (for feedback on it)."""
        self._answers.remember(request_id, version)

    def trust(self, version: str) -> None:
        """Do not re-mark ``version`` "good" when it answers (the arbiter owns its status)."""
        self._answers.trust(version)

    def version_of(self, request_id: str) -> str | None:
        """The version that answered ``request_id``, if it was answered recently."""
        return self._answers.version_of(request_id)

    async def deliver_feedback(self, feedback: dict[str, Any]) -> str | None:
        """Run the main's feedback hooks on ``feedback``; None once they ran, else why not."""
        return await deliver_feedback(self._pool, feedback, self.config.request_deadline,
                                      self.events)

    # -- instances come and go ---------------------------------------------

    def on_death(self, instance: InstanceHandle, reason: str) -> None:
        """Called by the handle the moment an instance is known dead."""
        self.journal.unfollow(instance)
        if instance in self._pool.retired:
            return  # a version being replaced: nothing to replace it with
        was_main = self._pool.vacate(instance) == "main"
        if self._replacer.stopping or not self._tasks.open_for_tasks:
            return
        self._tasks.spawn(self._replacer.replace(instance, reason, was_main),
                          f"replace-{instance.instance_id}")

    def _respawn_later(self, role: str) -> None:
        if self._tasks.open_for_tasks:
            self._tasks.spawn(self._replacer.respawn(role), f"respawn-{role}")

    async def _promote(self, instance: InstanceHandle) -> None:
        """Route requests to ``instance``; relay its evolution intents."""
        if instance.role != "main":
            self.journal.unfollow(instance)
        await self._pool.promote(instance)
        if self.on_intent is not None:
            self._relay_intents(instance, self.on_intent)

    def _relay_intents(self, instance: InstanceHandle, listener: IntentListener) -> None:
        if not self._tasks.open_for_tasks:
            return  # stopping: nothing would own the relay
        still_main: Callable[[], bool] = lambda: instance is self._pool.main
        self._tasks.spawn(relay_intents(instance, listener, still_main),
                          f"intents-{instance.instance_id}")

    def listen_intents(self, listener: IntentListener) -> None:
        """Send the main's ``evolution_intent`` frames to ``listener`` from now on."""
        self.on_intent = listener
        main = self._pool.main
        if main is not None and main.alive:
            self._relay_intents(main, listener)

    async def reload(self, agent: Path, version: str, reason: str) -> None:
        """Serve ``version`` (the agent at ``agent``) instead of the current one.

        Memory is intact: the new main restores from the vault (checkpoint +
        WAL) after the old main drained. If the new version fails to start,
        the old one keeps serving and the error propagates.
        """
        await self._reloads.reload(agent, version, reason)

    async def send_to_main(self, message: Message) -> bool:
        """Send ``message`` to the main if there is one; whether it was sent."""
        main = self._pool.main
        if main is None or not main.alive:
            return False
        try:
            await main.send(message)
        except InstanceDied:
            return False
        return True

    def zygote_env(self) -> dict[str, str]:
        """The environment a zygote of this agent runs with (for candidate zygotes)."""
        return self._factory.env()

    async def _restore(self, instance: InstanceHandle) -> None:
        await self.journal.restore(instance, follow=instance.role != "main")

    # -- journaling (what instances write): delegated to the Journal ------

    async def request_checkpoint(self, instance: InstanceHandle, timeout: float) -> None:
        """Ask ``instance`` for its state and write it (before risk, at shutdown)."""
        await self.journal.request_checkpoint(instance, timeout)

    @property
    def last_checkpoint(self) -> dict[str, Any] | None:
        """The newest checkpoint written: ``{id, last_sequence, timestamp_ns}``."""
        return self.journal.last_checkpoint

    async def on_wal_entry(self, instance: InstanceHandle, message: Message) -> None:
        """Journal a memory write from the main, ack it, tail it to the standby."""
        if instance is not self.main and instance not in self._retired:
            instance.kill(f"protocol violation: {instance.role} may not write to the vault")
            return
        await self.journal.write(instance, message, tail=True)

    def on_llm_call(self, instance: InstanceHandle, message: Message) -> None:
        """Make the model call ``instance`` asks for (answered by ``llm_result``)."""
        self.llm.serve(instance, message)

    async def on_checkpoint(self, instance: InstanceHandle, message: Message) -> None:
        """Write the main's state as a checkpoint, then acknowledge it."""
        if instance is self.main:  # only the main's state is the agent's state
            await self.journal.checkpoint(instance, message)

    def _vault_failed(self, error: WALFatalError) -> None:
        if not self.fatal.done():
            self.fatal.set_result(error)

    # -- what `GET /v1/status` shows -------------------------------------

    def describe(self) -> list[dict[str, Any]]:
        """Live instances for `GET /v1/status`."""
        return self._pool.describe()

    def describe_tree(self) -> dict[str, Any]:
        """This host as a node of the supervision tree: its zygote and instances."""
        zygote = self._factory.zygote
        children: list[dict[str, Any]] = [{
            "id": "zygote", "pid": zygote.pid if zygote is not None else None,
            "status": "running" if zygote is not None and zygote.alive else "stopped",
        }]
        children += [{"id": i.role, "pid": i.pid, "status": "running",
                      "instance_id": i.instance_id, "version": i.version}
                     for i in self._pool.live()]
        return {"version": self.version, "instance_restarts": self.restarts,
                "max_restarts": self._policy.max_restarts,
                "max_seconds": self._policy.max_seconds, "children": children}

