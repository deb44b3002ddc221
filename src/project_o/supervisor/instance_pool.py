"""The instances of the version being served: the mains, the standby, who is leaving.

::

    slots           "main", "main-1" … "main-{N-1}" ── N mains, each serves requests;
                    choose_main() picks the live one with the least load (its requests
                    in flight and waiting), ties taken in turn; "main" is the primary:
                    it writes the checkpoints, gets experiment results (tell_main)
                    standby ───── warm, restored, tails the WAL; take_standby() on a takeover
    retired         instances of a version being replaced: they finish their requests and
                    are shut down by the reload, never replaced

Every main may write; each write is tailed to every other main and the
standby in WAL order (see :mod:`~.journal`), so all of them converge on one
memory. A slot is emptied the moment its instance is known dead
(:meth:`vacate`), synchronously, so no request is routed to a corpse meanwhile.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Final

from project_o.errors import NoInstanceAvailable, RequestTimeout
from project_o.supervisor.config import MAX_INSTANCES
from project_o.supervisor.instance_handle import InstanceDied, InstanceHandle
from project_o.wire import Message

__all__ = ["MAX_INSTANCES", "PRIMARY", "InstancePool", "main_slots"]

#: the slot of the primary main (the one of a pool of one)
PRIMARY: Final = "main"


def main_slots(count: int) -> list[str]:
    """The names of ``count`` main slots: ``main``, then ``main-1`` … ``main-{count-1}``."""
    return [PRIMARY] + [f"{PRIMARY}-{index}" for index in range(1, count)]


class InstancePool:
    """The main slots, the standby slot and the retired instances of one agent host."""

    def __init__(self, mains: int = 1) -> None:
        if not 1 <= mains <= MAX_INSTANCES:
            raise ValueError(f"a pool holds 1 to {MAX_INSTANCES} mains, not {mains}")
        #: slot name -> its main (None while empty), the primary first
        self.mains: dict[str, InstanceHandle | None] = dict.fromkeys(main_slots(mains))
        self.standby: InstanceHandle | None = None
        self.retired: set[InstanceHandle] = set()
        self._main_ready = asyncio.Event()  # set while some main is live
        self._turn = 0  # where ties between equally loaded mains start (round robin)

    @property
    def main(self) -> InstanceHandle | None:
        """The primary main (slot ``main``): checkpoints and experiments go through it."""
        return self.mains[PRIMARY]

    def occupant(self, slot: str) -> InstanceHandle | None:
        """The instance in ``slot`` (a main slot or ``standby``), if any."""
        return self.standby if slot == "standby" else self.mains.get(slot)

    def is_main(self, instance: InstanceHandle) -> bool:
        """Whether ``instance`` holds one of the main slots."""
        return any(main is instance for main in self.mains.values())

    def live_mains(self) -> list[InstanceHandle]:
        """The mains that are alive, in slot order."""
        return [m for m in self.mains.values() if m is not None and m.alive]

    async def wait_for_main(self, remaining: float) -> InstanceHandle:
        """The live primary main if any, else another live main; waits up to ``remaining`` s."""
        return await self.choose_main(remaining, lambda main: 0 if main is self.main else 1,
                                      fair=False)

    async def choose_main(self, remaining: float, load: Callable[[InstanceHandle], int],
                          *, fair: bool = True) -> InstanceHandle:
        """The live main with the least ``load``, waiting up to ``remaining`` s for one.

        ``fair``: ties go to each main in turn (else to the first in slot order).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + remaining
        # A loop: the mains can die between the event firing and us waking.
        while not (live := self.live_mains()):
            if deadline - loop.time() <= 0:
                raise RequestTimeout("the deadline passed before an instance was ready")
            try:
                async with asyncio.timeout_at(deadline):
                    await self._main_ready.wait()
            except TimeoutError:
                raise NoInstanceAvailable(
                    "no instance of the agent is ready; it is restarting — retry shortly"
                ) from None
        if fair and len(live) > 1:
            start = self._turn % len(live)
            self._turn += 1
            live = live[start:] + live[:start]
        return min(live, key=load)  # min keeps the first of equals

    async def promote(self, instance: InstanceHandle, slot: str = PRIMARY) -> None:
        """Make ``instance`` the main of ``slot`` (telling it, if forked for another role).

        Raises InstanceDied if it is dead by now: a dead main would hold the slot
        with the readiness flag set, and waiting requests would spin on it.
        """
        if slot not in self.mains:
            raise ValueError(f"no main slot {slot!r} in a pool of {len(self.mains)}")
        if not instance.alive:
            raise InstanceDied(instance.death_reason or "it died before it was promoted")
        if instance.role != "main" or slot != PRIMARY:
            # Only the primary checkpoints (see docs/design.md, "A pool of mains").
            instance.role = "main"
            await instance.send(Message("promote", {"role": "main",
                                                    "checkpoints": slot == PRIMARY}))
        self.mains[slot] = instance
        self._main_ready.set()

    def vacate(self, instance: InstanceHandle) -> str | None:
        """Empty the slot of a dead ``instance``; the slot's name, or None if it held none."""
        if instance in self.retired:
            return None
        for slot, main in self.mains.items():
            if main is instance:
                self.mains[slot] = None
                if not self.live_mains():
                    self._main_ready.clear()
                return slot
        if instance is self.standby:
            self.standby = None
            return "standby"
        return None

    async def tell_main(self, message: Message) -> bool:
        """Send ``message`` to the primary main if it is live; whether it was sent."""
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

    def retire(self) -> tuple[dict[str, InstanceHandle], InstanceHandle | None]:
        """Empty every slot for a reload: the old mains (by slot) and standby become retired."""
        mains = {slot: m for slot, m in self.mains.items() if m is not None}
        standby = self.standby
        self.retired.update(mains.values())
        if standby is not None:
            self.retired.add(standby)
        self.mains = dict.fromkeys(self.mains)
        self.standby = None
        self._main_ready.clear()  # new requests wait for the new mains
        return mains, standby

    def reinstate(self, mains: dict[str, InstanceHandle],
                  standby: InstanceHandle | None) -> None:
        """Undo :meth:`retire` (the new version failed): the standby back, if alive.

        The old mains leave the retired set; the caller promotes the live
        ones back into their slots.
        """
        self.retired.difference_update({*mains.values(), standby})
        self.standby = standby if standby is not None and standby.alive else None

    def empty_mains(self) -> list[str]:
        """The main slots nobody holds (alive), in slot order."""
        return [slot for slot, main in self.mains.items() if main is None or not main.alive]

    async def watch(self, interval: float, timeout: float) -> None:
        """Kill instances whose heartbeats stopped (a hung handler, a deadlock); runs forever."""
        period = min(interval, timeout) / 2
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for instance in self.live():
                instance.kill_if_silent(timeout, now)

    def live(self) -> list[InstanceHandle]:
        """The mains and standby that are alive, mains first."""
        standby = self.standby
        return self.live_mains() + ([standby] if standby is not None and standby.alive else [])

    def describe(self) -> list[dict[str, Any]]:
        """Live instances for `GET /v1/status`, each with its slot."""
        slots = {id(i): slot for slot, i in self.mains.items() if i is not None}
        if self.standby is not None:
            slots[id(self.standby)] = "standby"
        return [{**i.describe(), "slot": slots.get(id(i))} for i in self.live()]
