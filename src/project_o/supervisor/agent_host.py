"""Keeps one agent version serving: zygote, mains, warm standby, routing.

::

            submit(input) ── least in flight ──┐
                 │             ┌──────── zygote (agent code imported once, gc.freeze())
                 ▼             │ fork (N mains: --instances)   fork
           ┌──── main ◄────────┤
           │  wal_entry        └──► standby (restored, tails the WAL)
           ▼
        vault.append ──fsync──► wal_entry tail to the other mains and the standby,
                                then wal_ack to the writer (one socket order: WAL order)

The host is the agent's node of the supervision tree (agent -> zygote,
main, standby) and is put together from parts, one concept each. The host
wires them together and answers its instances (their writes, checkpoints
and deaths); whoever needs a part is handed the part itself, never a host
method that forwards to it:

==================  ==========================================  ===============================
attribute           part                                        what it does
==================  ==========================================  ===============================
``pool``            :class:`~.instance_pool.InstancePool`       the main and standby slots, the
                                                                main's readiness, telling it
``factory``         :class:`~.instance_factory.InstanceFactory`  the zygote, forking and
                                                                restoring instances; the
                                                                version served
``tree``            :class:`~.agent_tree.AgentTree`             zygote, main and standby as
                                                                children of a SupervisionTree:
                                                                what restarts them
``replacer``        :class:`~.replacement.Replacer`             takeover, death records, fall
                                                                back
``restart_policy``  :class:`~.restart_policy.RestartPolicy`     the tree's limit; back-off
                                                                when it gives up
``reloads``         :class:`~.hot_reload.HotReload`             serving another version without
                                                                losing memory
``dispatcher``      :class:`~.dispatch.Dispatcher`              a request's path: main,
                                                                re-dispatch on a death,
                                                                deadline, poison pills
``answers``         :class:`~.answers.AnswerBook`               which version answered what
``journal``         :class:`~.journal.Journal`                  writes, tails, checkpoints
``llm``             :class:`~.llm_proxy.LLMProxy`               the model calls of every
                                                                instance (the key stays here)
``tasks``           :class:`~.nursery.Nursery`                  owns every task the host runs
==================  ==========================================  ===============================

Feedback hooks run through :func:`~.feedback_delivery.deliver_feedback`
on the pool; the main's ``ctx.evolve`` intents are relayed to the
evolution control by :func:`~.intents.relay_intents`.

When the main dies (EOF on its socket, a protocol violation, missed
heartbeats, a blown deadline) the standby moves up into the main's slot at
once (requests in flight are re-dispatched to it), and the agent's tree
restarts the standby's slot by a fork; with no standby, the tree restarts
the main's slot by a fork. A request
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
from typing import Any

from project_o.errors import ProjectOError, WALFatalError
from project_o.supervisor.agent_tree import AgentTree, stopped_by_tree
from project_o.supervisor.answers import RECENT_ANSWERS, AnswerBook
from project_o.supervisor.config import POISON_THRESHOLD, SupervisorConfig
from project_o.supervisor.dispatch import Dispatcher
from project_o.supervisor.events import EventLog
from project_o.supervisor.hot_reload import HotReload
from project_o.supervisor.instance_factory import InstanceFactory
from project_o.supervisor.instance_handle import InstanceHandle
from project_o.supervisor.instance_pool import PRIMARY, InstancePool
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

#: how long the main may take to write its final checkpoint at shutdown
FINAL_CHECKPOINT_TIMEOUT = 10.0


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
        self.config, self.vault, self.events, self.book = config, vault, events, book
        self.metrics = metrics if metrics is not None else SupervisorMetrics()
        #: resolved with the error when the vault fails (the supervisor's tree escalates)
        self.fatal: asyncio.Future[BaseException] = (
            fatal if fatal is not None else asyncio.get_running_loop().create_future())
        self.journal = Journal(vault, self.metrics, lambda error: _resolve(self.fatal, error))
        #: where the main's ``evolution_intent`` frames go (the evolution control)
        self.on_intent: IntentListener | None = None
        self.tasks = Nursery("agent host")
        #: makes the model calls of every instance (main, standby, candidates): the key stays here
        self.llm = LLMProxy(config.llm, self.tasks.spawn, metrics=self.metrics,
                            catalog=lambda: vault.catalog, prices=config.llm_prices)
        self.pool = InstancePool(config.instances)
        self.factory = make_factory(config, version, events, self, self._restore)
        self.restart_policy = RestartPolicy(config.max_restarts, config.restart_period,
                                            clock=clock)
        self.replacer = Replacer(self.pool, self.factory, events, book, self._promote)
        self.tree = AgentTree(config, self.pool, self.factory, self.replacer,
                              self.restart_policy, events, self._promote, sleep=sleep,
                              clock=clock)
        self.reloads = HotReload(self.pool, self.factory, events, promote=self._promote,
                                 refill=self.tree.refill,
                                 drain_timeout=config.request_deadline, standby=config.standby)
        self.answers = AnswerBook()
        self.dispatcher = Dispatcher(
            self.pool, self.factory, events, self.metrics, self.answers,
            PoisonTracker(POISON_THRESHOLD), default_deadline=config.request_deadline,
            on_answer=self._prove, max_queued=config.max_queued,
        )

    # -- lifecycle ------------------------------------------------------

    async def start(self) -> None:
        """Start the zygote, then the agent's tree: the main and (if configured) the standby."""
        await self.tasks.open()
        factory = self.factory
        try:
            try:
                await factory.ensure_zygote()
            except ProjectOError as exc:
                # New code that does not even import: run the last good version instead.
                if not await self.replacer.fall_back(f"failed to load: {exc}"):
                    raise
                await factory.ensure_zygote()
            assert factory.zygote is not None
            self.events.record("start", factory.version, "zygote ready", pid=factory.zygote.pid)
            await self.tree.start()
        except BaseException:
            await self.stop()
            raise
        config = self.config
        self.tasks.spawn(self.pool.watch(config.heartbeat_interval, config.heartbeat_timeout),
                         "watchdog")
        self.tasks.spawn(self.tree.run(), "agent tree")

    async def stop(self) -> None:
        """Final checkpoint from the primary main, then stop the tree and every process."""
        main, others = self.pool.main, self.pool.live()
        if main is not None and main.alive:
            with contextlib.suppress(Exception):
                await self.journal.request_checkpoint(main, FINAL_CHECKPOINT_TIMEOUT)
        for live in others:
            if live.alive:
                with contextlib.suppress(Exception):
                    await live.send(Message("shutdown", {}))
        await self.tree.stop()  # kills what is in its slots; nothing is restarted any more
        await self.tasks.close()  # watchdog, intent relays, death records: cancelled, awaited
        self.llm.close()
        everyone: list[InstanceHandle | None] = [*others, *self.pool.mains.values(),
                                                 self.pool.standby]
        for instance in everyone:
            if instance is not None:
                instance.kill("supervisor shutting down")
                await instance.close()
        await self.factory.close()
        self.journal.close()

    # -- what instances send (the handle's InstanceOwner) ------------------

    def on_wal_entry(self, instance: InstanceHandle, message: Message) -> None:
        """Journal a memory write from a main; the journal acks it and tails it to every
        other main and the standby once durable (every main of the pool may write; a
        standby may not)."""
        if not self.pool.is_main(instance) and instance not in self.pool.retired:
            instance.kill(f"protocol violation: {instance.role} may not write to the vault")
            return
        self.journal.submit(instance, message, tail=True)

    def on_llm_call(self, instance: InstanceHandle, message: Message) -> None:
        """Make the model call ``instance`` asks for (answered by ``llm_result``)."""
        self.llm.serve(instance, message)

    async def on_checkpoint(self, instance: InstanceHandle, message: Message) -> None:
        """Write the main's state as a checkpoint, then acknowledge it."""
        # Only the primary's: every main holds the same memory (each write tailed to
        # all), so one writer of checkpoints is enough, and two would race.
        if instance is self.pool.main:
            await self.journal.checkpoint(instance, message)

    def on_death(self, instance: InstanceHandle, reason: str) -> None:
        """Called by the handle the moment an instance is known dead: its slot ends."""
        self.journal.unfollow(instance)
        if instance in self.pool.retired:
            return  # a version being replaced: the reload shuts it down
        news = not stopped_by_tree(reason)  # else its tree stopped it on purpose
        role = self.pool.vacate(instance)
        if role in self.pool.mains and news and self.pool.standby is not None and (
                self.tasks.open_for_tasks):
            self.tasks.spawn(self.tree.take_over(instance, reason, role), "takeover")
        elif role is not None and news:
            self.tree.vacated(role, instance, reason)  # the tree restarts the slot
        self.factory.restarts += news
        if self.tasks.open_for_tasks:
            self.tasks.spawn(self._bury(instance, reason, news), f"bury-{instance.instance_id}")

    async def _bury(self, dead: InstanceHandle, reason: str, news: bool) -> None:
        await dead.close()
        if news:
            await self.replacer.record_death(dead, reason)

    # -- wiring the parts together ------------------------------------------

    def listen_intents(self, listener: IntentListener) -> None:
        """Send the main's ``evolution_intent`` frames to ``listener`` from now on."""
        self.on_intent = listener
        main = self.pool.main
        if main is not None and main.alive:
            self._relay_intents(main, listener)

    def _relay_intents(self, instance: InstanceHandle, listener: IntentListener) -> None:
        if not self.tasks.open_for_tasks:
            return  # stopping: nothing would own the relay
        still_main: Callable[[], bool] = lambda: self.pool.is_main(instance)
        self.tasks.spawn(relay_intents(instance, listener, still_main),
                         f"intents-{instance.instance_id}")

    async def _promote(self, instance: InstanceHandle, slot: str = PRIMARY) -> None:
        """Route requests to ``instance`` in main ``slot``; relay its evolution intents.

        It goes on following the WAL: the other mains' writes reach it there.
        """
        await self.pool.promote(instance, slot)
        if self.on_intent is not None:
            self._relay_intents(instance, self.on_intent)

    async def _restore(self, instance: InstanceHandle) -> None:
        # Every instance follows: a main gets the other mains' (and retired ones') writes.
        await self.journal.restore(instance, follow=True)

    def _prove(self, version: str) -> None:
        """Mark a version good in the catalog once it has answered a request."""
        if self.book is not None and self.answers.prove(version) and self.tasks.open_for_tasks:
            self.tasks.spawn(_mark_good(self.book, version, self.events), f"mark-good-{version}")

    # -- what `GET /v1/status` shows -------------------------------------

    def describe_tree(self) -> dict[str, Any]:
        """This host as a node of the supervision tree: the agent's tree and its children."""
        return {"version": self.factory.version, "instance_restarts": self.factory.restarts,
                "strategy": "one_for_one", "max_restarts": self.restart_policy.max_restarts,
                "max_seconds": self.restart_policy.max_seconds,
                "children": self.tree.describe()}


def _resolve(fatal: asyncio.Future[BaseException], error: WALFatalError) -> None:
    """The vault failed: tell whoever owns ``fatal`` (once)."""
    if not fatal.done():
        fatal.set_result(error)


async def _mark_good(book: VersionBook, version: str, events: EventLog) -> None:
    try:
        await asyncio.to_thread(book.mark_good, version)
    except ProjectOError as exc:  # the catalog said no: worth an event, not the host
        events.record("mark_good_failed", version, str(exc), version=version)
