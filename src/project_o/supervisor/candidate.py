"""A candidate version under test: its own zygote and one shadow or canary instance.

::

    CandidateHost.start(agent, version)   zygote imports the candidate (stage 2 of
                                          validation: AgentLoadError = rejected)
    spawn("shadow")   fork + restore from the vault (the main's state at fork time);
                      side-effecting tools stubbed; writes acked into a private
                      ShadowJournal: it diverges, the vault never sees them
    spawn("canary")   fork + restore from the vault; serves real users, so its
                      writes go through the host's Journal like the main's (a
                      vault failure is reported as one, never blamed on it)
    request(...)      one request to the instance (InstanceDied / HandlerError)
    on_failure(why)   called once when the instance dies, hangs or breaks the
                      protocol: the arbiter's guardrail

A candidate has no standby and is never replaced: its death is the
verdict. Its ``evolution_intent`` frames are answered "ignored" (a version
under test may not start experiments of its own).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from project_o.runtime.zygote_client import ZygoteHandle
from project_o.supervisor.agent_host import AgentHost
from project_o.supervisor.instance_handle import InstanceDied, InstanceHandle
from project_o.supervisor.instance_start import launch
from project_o.supervisor.journal import ShadowJournal
from project_o.vault.vault import RestorePoint
from project_o.wire import Message

__all__ = ["CANARY", "SHADOW", "CandidateHost"]

SHADOW, CANARY = "shadow", "canary"


class CandidateHost:
    """Runs one candidate version's zygote and its single shadow or canary instance."""

    def __init__(self, host: AgentHost, on_failure: Callable[[str], None]) -> None:
        self.host = host
        self.version = ""
        self.instance: InstanceHandle | None = None
        self.failure: str | None = None
        self._on_failure = on_failure
        self._zygote: ZygoteHandle | None = None
        self.shadow_journal = ShadowJournal()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = False

    async def start(self, agent: Path, version: str) -> None:
        """Start the candidate's zygote (raises AgentLoadError if it does not import)."""
        self.version = version
        self._zygote = await ZygoteHandle.start(agent, version, env=self.host.zygote_env())

    async def spawn(self, role: str) -> InstanceHandle:
        """Fork the instance (replacing any previous one) and restore it from the vault."""
        assert self._zygote is not None
        await self._drop_instance()
        config = {**self.host.config.instance_config(), "stub_side_effects": role == SHADOW}
        instance = await launch(
            self._zygote, role=role, instance_id=f"{role}-{uuid.uuid4().hex[:8]}",
            version=self.version, owner=self, limits=self.host.config.limits, config=config,
            max_frame_size=self.host.config.max_frame_bytes, restore=self._restore,
        )
        self._spawn_task(self._watchdog(instance))
        self._spawn_task(self._ignore_intents(instance))
        return instance

    async def _restore(self, instance: InstanceHandle) -> None:
        self.instance = instance  # from now on its death is the candidate's failure
        await self.host.journal.restore(instance, follow=False, on_point=self._fresh_shadow)

    def _fresh_shadow(self, point: RestorePoint) -> None:
        # Before the restore is sent: a shadow writes as soon as it has applied it.
        self.shadow_journal = ShadowJournal(point.last_sequence)

    async def request(self, request_id: str, payload: Any, deadline_s: float) -> Any:
        """Send one request to the instance and await its output."""
        instance = self.instance
        if instance is None or not instance.alive:
            raise InstanceDied(self.failure or "the candidate has no live instance")
        return await asyncio.wait_for(instance.request(request_id, payload, deadline_s),
                                      deadline_s)

    # -- what the instance sends ------------------------------------------

    async def on_wal_entry(self, instance: InstanceHandle, message: Message) -> None:
        """Shadow: ack into the private journal. Canary: journal in the vault."""
        if instance.role == SHADOW:
            await self.shadow_journal.write(instance, message)
        else:  # the main's standby does not follow a canary's writes
            await self.host.journal.write(instance, message, tail=False)

    async def on_checkpoint(self, instance: InstanceHandle, message: Message) -> None:
        """A candidate's state is never the agent's state: not written."""

    def on_death(self, instance: InstanceHandle, reason: str) -> None:
        """The guardrail: report the first death of the serving instance."""
        if instance is not self.instance or self._closing or self.failure is not None:
            return
        self.failure = reason
        self._on_failure(reason)

    # -- health -----------------------------------------------------------

    async def _watchdog(self, instance: InstanceHandle) -> None:
        config = self.host.config
        period = min(config.heartbeat_interval, config.heartbeat_timeout) / 2
        while instance.alive:
            await asyncio.sleep(period)
            instance.kill_if_silent(config.heartbeat_timeout, time.monotonic())

    async def _ignore_intents(self, instance: InstanceHandle) -> None:
        while instance.alive:
            try:
                message = await instance.waiter("evolution_intent")
            except InstanceDied:
                return
            with contextlib.suppress(InstanceDied):
                await instance.send(Message("evolution_result", {
                    "id": message.data.get("id"), "experiment_id": None, "status": "ignored",
                    "reason": "a version under test may not start experiments",
                }))

    # -- shutdown ---------------------------------------------------------

    async def _drop_instance(self) -> None:
        instance, self.instance = self.instance, None
        if instance is not None:
            self._closing = True
            instance.kill("replaced by the next stage")
            await instance.close()
            self._closing = False

    async def close(self) -> None:
        """Stop the instance and the zygote."""
        self._closing = True
        for task in self._tasks:
            task.cancel()
        if self.instance is not None:
            with contextlib.suppress(Exception):
                await self.instance.send(Message("shutdown", {}))
            self.instance.kill("experiment over")
            await self.instance.close()
        if self._zygote is not None:
            await self._zygote.close()

    def _spawn_task(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
