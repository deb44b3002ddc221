"""What the agent's tree calls to fill a slot again, and what it does when the tree gives up.

::

    the tree restarts "main" ──► take_over(): the live standby is promoted at once
                                 ("takeover"); None if there is none to promote
                                 (the host then forks a fresh main)
    an instance died ──► record_death(): a crash or hang event, with how the process
                         ended if its zygote says (awaited, bounded)
    the tree escalated ──► fall_back(): give the served version up for the previous
                           good one, if there is one

Restarts themselves (when, how many in how long, and giving up) are the
agent's :class:`~project_o.supervisor.tree.SupervisionTree`'s; see
:mod:`~project_o.supervisor.agent_host`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from project_o.supervisor.events import EventLog
from project_o.supervisor.instance_factory import InstanceFactory, exit_status
from project_o.supervisor.instance_handle import InstanceDied, InstanceHandle
from project_o.supervisor.instance_pool import InstancePool
from project_o.supervisor.versions import VersionBook

__all__ = ["Replacer"]

Promote = Callable[[InstanceHandle, str], Awaitable[None]]


class Replacer:
    """Takeover by the standby, death records and falling back to a good version."""

    def __init__(
        self, pool: InstancePool, factory: InstanceFactory, events: EventLog,
        book: VersionBook | None, promote: Promote,
    ) -> None:
        self._pool = pool
        self._factory = factory
        self._events = events
        self._book = book
        self._promote = promote

    async def take_over(self, dead: str, slot: str = "main") -> InstanceHandle | None:
        """Promote the live standby into main ``slot`` (``dead`` died in it); None if it can't."""
        standby = self._pool.take_standby()
        if standby is None:
            return None
        try:
            await self._promote(standby, slot)
        except InstanceDied:
            return None  # it died on the way: the caller forks a main
        self._events.record("takeover", standby.instance_id,
                            f"standby promoted into {slot} after {dead} died")
        return standby

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
        """Give up on the served version and serve the previous good one (if any)."""
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
        if self._pool.standby is not None:
            self._pool.standby.kill("its version was given up")
        if old_zygote is not None:
            await old_zygote.close()  # its instances die with it
        return True
