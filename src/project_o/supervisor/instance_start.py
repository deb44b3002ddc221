"""Bringing a freshly forked instance to life: hello, restore, first heartbeat.

Shared by the agent host (main, standby) and the candidate host (shadow,
canary), which differ only in what they restore the instance *from*::

    zygote.fork ──► InstanceHandle ── hello ──► restore(instance) ──► serving
                                        any failure: the instance is killed, the error raised
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import Any

from project_o.runtime.zygote_client import ZygoteHandle
from project_o.supervisor.bounds import Quotas
from project_o.supervisor.instance_handle import InstanceHandle, InstanceOwner
from project_o.vault.sealed import SealedCopies
from project_o.vault.vault import RestorePoint
from project_o.wire import Message

__all__ = ["STARTUP_TIMEOUT", "launch", "send_restore"]

#: how long a fresh instance may take to say hello and finish restoring
STARTUP_TIMEOUT = 30.0
#: the most requests the supervisor sends one instance at once, whatever it says
MAX_CONCURRENCY = 4096


async def launch(
    zygote: ZygoteHandle, *, role: str, instance_id: str, version: str, owner: InstanceOwner,
    limits: dict[str, Any], config: dict[str, Any], max_frame_size: int,
    restore: Callable[[InstanceHandle], Awaitable[None]], quotas: Quotas,
) -> InstanceHandle:
    """Fork an instance, wait for its hello, then ``restore`` it; kill it if either fails.

    ``quotas``: what it may write and stream (:class:`~.bounds.Quotas`).
    """
    forked = await zygote.fork(role, instance_id, limits, config)
    instance = InstanceHandle(
        pid=forked.pid, role=role, version=version, instance_id=instance_id,
        reader=forked.reader, writer=forked.writer, owner=owner, max_frame_size=max_frame_size,
        quotas=quotas,
    )
    instance.exited = forked.exited
    hello = instance.waiter("hello")
    instance.start_reading()
    try:
        async with asyncio.timeout(STARTUP_TIMEOUT):
            said = await hello
        instance.max_concurrency = _concurrency(said.data.get("max_concurrency"))
        await restore(instance)
    except BaseException:
        instance.kill(f"failed to start as {role}")
        await instance.close()  # its reader task is awaited here, not left behind
        raise
    return instance


def _concurrency(value: Any) -> int:
    """What the hello says the instance serves at once (1 if it says nothing sane)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        return 1
    return min(value, MAX_CONCURRENCY)


async def send_restore(instance: InstanceHandle, point: RestorePoint,
                       copies: SealedCopies) -> None:
    """Send ``point`` (checkpoint + later WAL entries); wait until it is applied.

    The checkpoint goes as a sealed in-memory copy whose descriptor rides
    with the frame, never as a path: agent code learns nothing of where the
    vault is; ``copies`` makes the copy, once per checkpoint. The instance
    sends no heartbeat before its restore, so its first one means the
    restore is done.
    """
    ready = instance.waiter("heartbeat")
    entries = [{"sequence": e.sequence, "operation": e.operation, "data": e.data}
               for e in point.entries]
    info = point.checkpoint
    if info is None:
        await instance.send(Message("restore", {
            "checkpoint": None, "entries": entries, "last_sequence": point.last_sequence}))
    else:
        fd = await asyncio.to_thread(copies.reader, info)
        try:
            await instance.send_with_fd(Message("restore", {
                "checkpoint": {"id": str(info.id)}, "entries": entries,
                "last_sequence": point.last_sequence}), fd)
        finally:
            os.close(fd)  # the instance holds its own copy of the descriptor now
    async with asyncio.timeout(STARTUP_TIMEOUT):
        await ready
