"""The instances of the version being served: who is main, who is standby, who is leaving.

::

    slots           main ──────── serves every request (wait_for_main() blocks until one is)
                    standby ───── warm, restored, tails the WAL; take_standby() on a takeover
    tell_main(message) ─ one frame to the main, if there is one (an experiment's result)
    retired         instances of a version being replaced: they finish their requests and
                    are shut down by the reload, never replaced

A slot is emptied the moment its instance is known dead (:meth:`vacate`),
synchronously, so no request is routed to a corpse meanwhile.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from project_o.errors import NoInstanceAvailable, RequestTimeout
from project_o.supervisor.instance_handle import InstanceDied, InstanceHandle
from project_o.wire import Message

__all__ = ["InstancePool"]


class InstancePool:
    """The main and standby slots and the retired instances of one agent host."""

    def __init__(self) -> None:
        self.main: InstanceHandle | None = None
        self.standby: InstanceHandle | None = None
        self.retired: set[InstanceHandle] = set()
        self._main_ready = asyncio.Event()

    async def wait_for_main(self, remaining: float) -> InstanceHandle:
        """The live main, waiting up to ``remaining`` seconds for one."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + remaining
        # A loop: the main can die again between the event firing and us waking.
        while self.main is None or not self.main.alive:
            if deadline - loop.time() <= 0:
                raise RequestTimeout("the deadline passed before an instance was ready")
            try:
                async with asyncio.timeout_at(deadline):
                    await self._main_ready.wait()
            except TimeoutError:
                raise NoInstanceAvailable(
                    "no instance of the agent is ready; it is restarting — retry shortly"
                ) from None
        return self.main

    async def promote(self, instance: InstanceHandle) -> None:
        """Make ``instance`` the main (telling it, if it was forked for another role).

        Raises InstanceDied if it is dead by now: a dead main would hold the slot
        with the readiness flag set, and waiting requests would spin on it.
        """
        if not instance.alive:
            raise InstanceDied(instance.death_reason or "it died before it was promoted")
        if instance.role != "main":
            instance.role = "main"
            await instance.send(Message("promote", {"role": "main"}))
        self.main = instance
        self._main_ready.set()

    def vacate(self, instance: InstanceHandle) -> str | None:
        """Empty the slot of a dead ``instance``; its role then, or None if it held none."""
        if instance in self.retired:
            return None
        if instance is self.main:
            self.main = None
            self._main_ready.clear()
            return "main"
        if instance is self.standby:
            self.standby = None
            return "standby"
        return None

    async def tell_main(self, message: Message) -> bool:
        """Send ``message`` to the main if there is a live one; whether it was sent."""
        main = self.main
        if main is None or not main.alive:
            return False
        try:
            await main.send(message)
        except InstanceDied:
            return False
        return True

    def take_standby(self) -> InstanceHandle | None:
        """The live standby, removed from its slot (for a takeover), or None."""
        standby, self.standby = self.standby, None
        return standby if standby is not None and standby.alive else None

    def retire(self) -> tuple[InstanceHandle | None, InstanceHandle | None]:
        """Empty both slots for a reload: the old main and standby become retired."""
        old = self.main, self.standby
        self.retired.update(i for i in old if i is not None)
        self.main, self.standby = None, None
        self._main_ready.clear()  # new requests wait for the new main
        return old

    def reinstate(self, main: InstanceHandle | None, standby: InstanceHandle | None) -> None:
        """Undo :meth:`retire` for the instances still alive (the new version failed)."""
        self.retired.difference_update({main, standby})
        self.standby = standby if standby is not None and standby.alive else None

    async def watch(self, interval: float, timeout: float) -> None:
        """Kill instances whose heartbeats stopped (a hung handler, a deadlock); runs forever."""
        period = min(interval, timeout) / 2
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for instance in self.live():
                instance.kill_if_silent(timeout, now)

    def live(self) -> list[InstanceHandle]:
        """The main and standby that are alive, main first."""
        return [i for i in (self.main, self.standby) if i is not None and i.alive]

    def describe(self) -> list[dict[str, Any]]:
        """Live instances for `GET /v1/status`."""
        return [i.describe() for i in self.live()]
