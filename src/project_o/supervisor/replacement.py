"""Replacing the dead: takeover by the standby, a fresh instance, restart intensity.

::

    on_death(instance) ── its slot is emptied at once (InstancePool.vacate)
      └─► replace(dead)                         one task in the host's nursery
            record how it ended (the zygote's exit report, awaited, bounded)
            main died ──► standby alive? promote it ("takeover") : respawn("main")
            then, after STANDBY_RESPAWN_DELAY, respawn("standby") if the slot is empty

    respawn(role) ──► RestartPolicy.record()
                        REPLACE ──► fork, restore, place
                        ESCALATE ─► fall back to the previous good version (if any),
                                    else back off (the delay doubles) and try again

A fork that fails is retried under the same policy; a fresh instance that
dies before it is promoted is replaced by another. Nothing here raises
out of its task for an instance dying at a bad moment: that is the
ordinary case it exists for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from project_o.errors import ProjectOError
from project_o.supervisor.config import STANDBY_RESPAWN_DELAY, SupervisorConfig
from project_o.supervisor.events import EventLog
from project_o.supervisor.instance_factory import InstanceFactory, exit_status
from project_o.supervisor.instance_handle import InstanceDied, InstanceHandle
from project_o.supervisor.instance_pool import InstancePool
from project_o.supervisor.restart_policy import RestartPolicy, Verdict
from project_o.supervisor.versions import VersionBook

__all__ = ["Replacer"]

Promote = Callable[[InstanceHandle], Awaitable[None]]
Sleep = Callable[[float], Awaitable[None]]


class Replacer:
    """Keeps the main and standby slots filled as instances die."""

    def __init__(
        self, config: SupervisorConfig, pool: InstancePool, factory: InstanceFactory,
        policy: RestartPolicy, events: EventLog, book: VersionBook | None, promote: Promote,
        *, sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._config = config
        self._pool = pool
        self._factory = factory
        self._policy = policy
        self._events = events
        self._book = book
        self._promote = promote
        self._sleep = sleep
        #: set when the host stops: nothing is replaced any more
        self.stopping = False

    async def replace(self, dead: InstanceHandle, reason: str, was_main: bool) -> None:
        """Fill the slot ``dead`` left (and the standby's, if the standby took over)."""
        self._factory.restarts += 1
        if was_main:
            standby = self._pool.take_standby()
            if standby is not None and await self._promoted(standby):
                self._events.record("takeover", standby.instance_id,
                                    f"standby promoted after {dead.instance_id} died")
            else:
                await self.respawn("main")
        await dead.close()
        await self.record_death(dead, reason)
        if self._config.standby and self._pool.standby is None and not self.stopping:
            await self._sleep(STANDBY_RESPAWN_DELAY)
            await self.respawn("standby")

    async def respawn(self, role: str) -> None:
        """Fork a fresh instance for ``role`` under the restart policy, and place it."""
        while not self.stopping:
            await self._back_off_if_needed()
            try:
                await self._factory.ensure_zygote()
                instance = await self._factory.spawn(role)
            except (ProjectOError, OSError, TimeoutError) as exc:
                self._events.record("spawn_failed", role, str(exc),
                                    version=self._factory.version)
                continue
            if await self._place(instance):
                return

    async def record_death(self, dead: InstanceHandle, reason: str) -> None:
        """Record a crash or hang event, with how the process ended if the zygote says."""
        status = await exit_status(dead)
        kind = "hang" if reason.startswith("hang") else "crash"
        if status is not None and status.signal:
            reason = f"{reason}; killed by signal {status.signal}"
        elif status is not None and status.exit_code is not None:
            reason = f"{reason}; exit code {status.exit_code}"
        self._events.record(kind, dead.instance_id, reason, pid=dead.pid, role=dead.role,
                            version=dead.version)

    async def fall_back(self, reason: str) -> bool:
        """Escalation: give up on the served version and serve the previous good one."""
        book, version = self._book, self._factory.version
        if book is None:
            return False
        previous = await asyncio.to_thread(book.previous_good, version)
        if previous is None:
            return False
        await asyncio.to_thread(book.reject, version, reason)
        agent = await asyncio.to_thread(book.materialize, previous)
        self._events.record("fallback", version, f"giving up on version {version} "
                            f"({reason}); falling back to {previous.id}", to=previous.id)
        old_zygote, _, _ = self._factory.serve(None, agent, previous.id)
        self._policy.clear()
        if self._pool.standby is not None:
            self._pool.standby.kill("its version was given up")
        if old_zygote is not None:
            await old_zygote.close()  # its instances die with it
        return True

    async def _back_off_if_needed(self) -> None:
        decision = self._policy.record()
        if decision.verdict is Verdict.REPLACE or await self.fall_back(decision.reason):
            return
        self._events.record("escalate", self._factory.version,
                            f"{decision.reason}; backing off {decision.delay:.2f} s",
                            version=self._factory.version)
        await self._sleep(decision.delay)

    async def _place(self, instance: InstanceHandle) -> bool:
        """Put a fresh instance where it is needed; False if it died before it got there."""
        slot = self._pool.offer(instance)
        if slot == "main":
            return await self._promoted(instance)
        if slot is None:  # replacements raced and the slot is filled
            instance.kill("not needed: another replacement filled the slot")
            await instance.close()
        return True

    async def _promoted(self, instance: InstanceHandle) -> bool:
        try:
            await self._promote(instance)
        except InstanceDied:
            return False  # it died on the way: the caller forks another
        return True
