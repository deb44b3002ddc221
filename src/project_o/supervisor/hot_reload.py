"""Hot reload: serve another version without losing memory (state is checkpoint + WAL).

::

    stop routing ─► drain the old mains ─► fork the new primary main from the
    new zygote, restore it from the vault ─► route to it ─► the other main
    slots and the standby refilled by the tree ─► shut down the old mains,
    standby and zygote

If the new main fails to start, what was served before (:class:`Served`)
is served again and the error propagates. Used by an experiment to promote
a candidate or roll it back.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from project_o.runtime.zygote_client import ZygoteHandle
from project_o.supervisor.events import EventLog
from project_o.supervisor.instance_factory import InstanceFactory
from project_o.supervisor.instance_handle import InstanceHandle
from project_o.supervisor.instance_pool import PRIMARY, InstancePool
from project_o.wire import Message

__all__ = ["HotReload", "Served"]


@dataclass(frozen=True)
class Served:
    """What a host served before a reload: enough to serve it again."""

    #: the old mains, by slot
    mains: dict[str, InstanceHandle]
    standby: InstanceHandle | None
    zygote: ZygoteHandle | None
    agent: Path
    version: str


class HotReload:
    """Swaps the version a host serves; one reload at a time."""

    def __init__(
        self, pool: InstancePool, factory: InstanceFactory, events: EventLog, *,
        promote: Callable[[InstanceHandle, str], Awaitable[None]],
        refill: Callable[[str], None], drain_timeout: float, standby: bool,
    ) -> None:
        """``refill(role)``: the agent's tree fills ``role`` again (a reload left it empty)."""
        self._pool = pool
        self._factory = factory
        self._events = events
        self._promote = promote
        self._refill = refill
        self._drain_timeout = drain_timeout
        self._standby = standby
        self._lock = asyncio.Lock()

    async def reload(self, agent: Path, version: str, reason: str) -> None:
        """Serve ``version`` (the agent at ``agent``) instead of the current one."""
        async with self._lock:
            factory = self._factory
            current = factory.zygote
            same = version == factory.version and current is not None and current.alive
            zygote = current if same else await factory.start_zygote(agent, version)
            assert zygote is not None
            mains, standby = self._pool.retire()
            await asyncio.gather(*(_drain(main, self._drain_timeout) for main in mains.values()))
            before = Served(mains, standby, *factory.serve(zygote, agent, version))
            try:
                await self._promote(await factory.spawn("main"), PRIMARY)
            except BaseException:
                await self._undo(before, zygote)
                raise
            self._events.record("reload", version, reason, previous=before.version)
            await self._shut_down(before, keep_zygote=same)
            for slot in self._pool.empty_mains():
                self._refill(slot)
            if self._standby and self._pool.standby is None:
                self._refill("standby")

    async def _undo(self, before: Served, zygote: ZygoteHandle) -> None:
        if zygote is not before.zygote:
            await zygote.close()
        self._factory.serve(before.zygote, before.agent, before.version)
        self._pool.reinstate(before.mains, before.standby)
        for slot in self._pool.mains:
            main = before.mains.get(slot)
            if main is not None and main.alive:
                await self._promote(main, slot)
            else:
                self._refill(slot)

    async def _shut_down(self, before: Served, *, keep_zygote: bool) -> None:
        for instance in (*before.mains.values(), before.standby):
            if instance is None:
                continue
            with contextlib.suppress(Exception):
                await instance.send(Message("shutdown", {}))
            instance.kill("replaced by a hot reload")
            await instance.close()
            self._pool.retired.discard(instance)
        if before.zygote is not None and not keep_zygote:
            await before.zygote.close()


async def _drain(instance: InstanceHandle, timeout: float) -> None:
    """Wait (up to ``timeout``) for ``instance`` to finish what it serves."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            await instance.drained()
