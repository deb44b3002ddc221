"""The agent's tree: its zygote, mains and standby, restarted by a SupervisionTree.

A child here is a *slot*, not one process: the tree's ``main`` is whoever
serves as the (primary) main; with ``--instances N`` the slots ``main-1``
… ``main-{N-1}`` hold the other mains, each restarted on its own. A slot's
run ends when its occupant dies (or the tree stops it); the tree then
restarts it by its spec's start function, which fills the slot again::

    a main dies, standby ready ──► take_over: the standby moves up into that
              main's slot at once (no restart) ──► SlotChild("standby").end("promoted to
              main") ──► tree: exit, intensity, restart ──► a new standby (a fork)
    a main dies, no standby ──► SlotChild(its slot).end(crashed) ──► tree restarts it: a fork
    zygote gone ──► ZygoteSlot.end ──► tree restarts it: a new zygote

A slot outlives a hot reload: the reload puts new instances (and a new
zygote) in the same slots, and the retired ones' deaths end nothing.
Stopping a slot kills its occupant at once (``kill`` is synchronous);
closing the handles is its owner's business (the agent host).

:class:`AgentTree` is the tree (``one_for_one``: a death restarts only
its slot; the zygote's instances die with it and their slots end on their
own) with the restart intensity of :class:`~.restart_policy.RestartPolicy`.
When the tree gives up (too many restarts too fast) it stops every child
and ends, but leaves live instances serving; :meth:`AgentTree.run` then
falls back to the previous good version, or backs off and starts a new
tree, which takes the live instances into its slots and forks what is
missing: the host never stops serving.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from project_o.runtime.zygote_client import ZygoteHandle
from project_o.supervisor.config import STANDBY_RESPAWN_DELAY, SupervisorConfig
from project_o.supervisor.events import EventLog
from project_o.supervisor.instance_factory import InstanceFactory
from project_o.supervisor.instance_handle import InstanceDied, InstanceHandle
from project_o.supervisor.instance_pool import InstancePool
from project_o.supervisor.replacement import Promote, Replacer
from project_o.supervisor.restart_policy import RestartPolicy
from project_o.supervisor.spec import Child, ChildSpec, EventKind, ExitReason, Strategy
from project_o.supervisor.tree import SupervisionTree

__all__ = ["AgentTree", "SlotChild", "ZygoteSlot", "stopped_by_tree"]

#: how the death reason of an instance the tree stopped ends
_STOPPED = "stopped by the agent's tree"


def stopped_by_tree(reason: str) -> bool:
    """Whether an instance died because its tree stopped its slot (not news: no crash)."""
    return reason.endswith(_STOPPED)


class _Slots(Protocol):
    def occupant(self, slot: str) -> InstanceHandle | None: ...


class _Ending:
    """An end, once: the Child protocol's ``wait`` over one future."""

    def __init__(self) -> None:
        self._ended: asyncio.Future[ExitReason] = asyncio.get_running_loop().create_future()

    @property
    def ended(self) -> bool:
        """Whether this run of the child is over."""
        return self._ended.done()

    def end(self, reason: ExitReason) -> None:
        """This run is over (the first reason counts)."""
        if not self._ended.done():
            self._ended.set_result(reason)

    async def wait(self) -> ExitReason:
        """Resolve when this run is over, with how it ended."""
        return await asyncio.shield(self._ended)


class SlotChild(_Ending):
    """A main slot or the standby slot of one agent host, as a child of its tree."""

    def __init__(self, role: str, pool: _Slots,
                 leave_running: Callable[[], bool] = lambda: False) -> None:
        """``leave_running()``: when the tree stops the slot, its occupant keeps serving."""
        super().__init__()
        self.role = role
        self._pool = pool
        self._leave_running = leave_running

    @property
    def occupant(self) -> InstanceHandle | None:
        """The instance in the slot now, if any."""
        return self._pool.occupant(self.role)

    @property
    def handle(self) -> object:
        """The occupant's pid (what the tree's events name), or the slot itself while empty."""
        occupant = self.occupant
        return occupant.pid if occupant is not None else self

    def terminate(self) -> None:
        """Stop: the occupant is killed (an instance has no state to save but the vault's)."""
        self.kill()

    def kill(self) -> None:
        """End this run, then kill the occupant (its death then ends nothing more).

        Unless ``leave_running()``: a tree that gave up leaves a live
        instance serving, and the next tree takes it into the same slot.
        """
        self.end(ExitReason.shutdown(f"{self.role} {_STOPPED}"))
        occupant = self.occupant
        if occupant is not None and not self._leave_running():
            occupant.kill(f"{self.role} {_STOPPED}")

    def __repr__(self) -> str:
        return f"<slot {self.role}>"


class ZygoteSlot(_Ending):
    """The zygote the host forks from, as a child of its tree.

    It follows ``current()``: the death of a zygote that is no longer the
    current one (closed by a reload or a fall back) ends nothing.
    """

    def __init__(self, current: Callable[[], ZygoteHandle | None]) -> None:
        super().__init__()
        self._current = current
        self._watched: ZygoteHandle | None = None
        self._follow()

    @property
    def handle(self) -> object:
        """The zygote's pid."""
        zygote = self._current()
        return zygote.pid if zygote is not None else self

    def terminate(self) -> None:
        """End this run; the host closes the zygote (closing takes awaiting)."""
        self.end(ExitReason.shutdown(f"zygote {_STOPPED}"))

    def kill(self) -> None:
        """The same as :meth:`terminate`."""
        self.terminate()

    def _follow(self) -> None:
        zygote = self._current()
        if zygote is None or zygote is self._watched:
            return
        self._watched = zygote
        zygote.lost().add_done_callback(lambda gone: self._on_lost(zygote, gone))

    def _on_lost(self, zygote: ZygoteHandle, gone: asyncio.Future[str]) -> None:
        if zygote is self._current():
            self.end(ExitReason.crashed(f"the zygote is gone: {gone.result()}"))
        else:
            self._follow()  # replaced on purpose: watch the one that serves now

    def __repr__(self) -> str:
        return "<slot zygote>"


Sleep = Callable[[float], Awaitable[None]]


class AgentTree:
    """The zygote, main and standby of one agent host, under a SupervisionTree."""

    def __init__(
        self, config: SupervisorConfig, pool: InstancePool, factory: InstanceFactory,
        replacer: Replacer, policy: RestartPolicy, events: EventLog, promote: Promote, *,
        sleep: Sleep, clock: Callable[[], float],
    ) -> None:
        self._config, self._pool, self._factory = config, pool, factory
        self._replacer, self._policy, self._events = replacer, policy, events
        self._promote, self._sleep, self._clock = promote, sleep, clock
        #: the current run of each instance slot ("main", "main-1" …, "standby")
        self.slots: dict[str, SlotChild] = {}
        self.tree: SupervisionTree | None = None
        self._stopping = False

    async def start(self) -> None:
        """Start a tree: the zygote (already started by the host), the main, the standby."""
        specs = [ChildSpec("zygote", self._start_zygote, shutdown="brutal_kill")]
        specs += [ChildSpec(slot, self._main_starter(slot), shutdown="brutal_kill")
                  for slot in self._pool.mains]
        if self._config.standby:
            specs.append(ChildSpec("standby", self._start_standby, shutdown="brutal_kill"))
        self.slots = {}
        self.tree = SupervisionTree(
            specs, strategy=Strategy.ONE_FOR_ONE,
            max_restarts=self._policy.max_restarts,
            max_seconds=self._policy.max_seconds, clock=self._clock,
            on_event=self._on_event, name="agent")
        self._policy.started()
        await self.tree.start()

    async def run(self) -> None:
        """While the host serves: when the tree gives up, fall back or back off, start anew."""
        while not self._stopping:
            assert self.tree is not None
            reason = await self.tree.wait()
            if self._stopping or reason.normal:
                return
            if not await self._replacer.fall_back(reason.detail):
                delay = self._policy.back_off()
                self._events.record("escalate", self._factory.version,
                                    f"{reason.detail}; backing off {delay:.2f} s",
                                    version=self._factory.version)
                await self._sleep(delay)
            else:
                self._policy.clear()
            await self._start_again()

    async def _start_again(self) -> None:
        try:
            await self.start()
        except Exception as exc:  # noqa: BLE001 - a failed start is one more failure: again
            self._events.record("spawn_failed", "agent", f"the agent's tree did not start: {exc}",
                                version=self._factory.version)

    async def stop(self) -> None:
        """Stop the tree: every slot's occupant is killed (the host closes the handles)."""
        self._stopping = True
        if self.tree is not None:
            await self.tree.stop()

    def vacated(self, role: str, dead: InstanceHandle, reason: str) -> None:
        """``dead`` died holding ``role``: its slot's run ends, and the tree restarts it."""
        slot = self.slots.get(role)
        if slot is not None:
            slot.end(ExitReason(False, reason))

    def refill(self, role: str, why: str = "left empty by a hot reload") -> None:
        """``role`` is empty though nobody died in it: the tree fills it again."""
        slot = self.slots.get(role)
        if slot is not None:
            slot.end(ExitReason.shutdown(f"{role} {why}"))

    def describe(self) -> list[dict[str, Any]]:
        """The tree's children for ``GET /v1/status``: status, restarts, what occupies each."""
        if self.tree is None:
            return []
        children = []
        for info in self.tree.which_children():
            child: dict[str, Any] = {
                "id": info.id, "status": info.status.value, "restarts": info.restarts,
                "last_exit": None if info.last_exit is None else info.last_exit.detail}
            child.update(self._occupant(info.id))
            children.append(child)
        return children

    def _occupant(self, child_id: str) -> dict[str, Any]:
        if child_id == "zygote":
            zygote = self._factory.zygote
            return {"pid": zygote.pid if zygote is not None and zygote.alive else None}
        instance = self._pool.occupant(child_id)
        if instance is None or not instance.alive:
            return {"pid": None}
        return {"pid": instance.pid, "instance_id": instance.instance_id,
                "version": instance.version}

    # -- the start functions the tree calls (first start and every restart) --------

    async def _start_zygote(self) -> Child:
        await self._factory.ensure_zygote()
        return ZygoteSlot(lambda: self._factory.zygote)

    async def take_over(self, dead: InstanceHandle, reason: str, slot: str = "main") -> None:
        """A main died with a standby ready: the standby moves up into its ``slot``.

        A takeover is no restart: the main's slot stays up with a new
        occupant, at once, whatever the restart intensity; the standby's
        slot is what empties, and the tree restarts it (a fork). If the
        standby cannot be promoted, the main's slot ends: the tree forks a main.
        """
        promoted = await self._replacer.take_over(dead.instance_id, slot)
        self.refill("standby", f"promoted to {slot}" if promoted else "died when promoted")
        if promoted is None:
            self.vacated(slot, dead, reason)

    def _slot(self, role: str) -> SlotChild:
        slot = self.slots[role] = SlotChild(role, self._pool, lambda: not self._stopping)
        return slot

    def _main_starter(self, name: str) -> Callable[[], Awaitable[Child]]:
        async def start_main() -> Child:
            slot = self._slot(name)
            main = self._pool.occupant(name)
            if main is not None and main.alive:
                return slot  # left serving by a tree that gave up: taken as it is
            await self._factory.ensure_zygote()
            # InstanceDied: the start failed
            await self._promote(await self._factory.spawn("main"), name)
            return slot
        return start_main

    async def _start_standby(self) -> Child:
        restarting = "standby" in self.slots
        slot = self._slot("standby")
        standby = self._pool.standby
        if standby is not None and standby.alive:
            return slot  # left running by a tree that gave up: taken as it is
        if restarting:
            await self._sleep(STANDBY_RESPAWN_DELAY)  # the main's own restart goes first
        await self._factory.ensure_zygote()
        instance = await self._factory.spawn("standby")
        if not instance.alive or self._pool.standby is not None:
            instance.kill("not needed: died on the way, or the slot is filled")
            raise InstanceDied(instance.death_reason or "the standby died before it was placed")
        self._pool.standby = instance
        return slot

    def _on_event(self, kind: EventKind, child_id: str | None, reason: str) -> None:
        if kind is EventKind.START_FAILED:  # exits are the host's crash events
            self._events.record("spawn_failed", str(child_id), reason,
                                version=self._factory.version)
