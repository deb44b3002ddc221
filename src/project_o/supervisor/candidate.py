"""A candidate version under test: its own zygote and one shadow or canary instance.

::

    async with CandidateHost(host, on_failure) as candidate:
        start(agent, version)  zygote imports the candidate (stage 2 of
                               validation: AgentLoadError = rejected)
        spawn(SHADOW)     fork + restore from the vault (the main's state at fork time);
                          side-effecting tools stubbed; writes acked into a private
                          ShadowJournal: it diverges, the vault never sees them
        spawn(CANARY)     fork + restore from the vault; serves real users, so its
                          writes are acked only once durable -- in an overlay of
                          their own (OverlayJournal), not in the agent's WAL
        promote_writes()  the overlay's writes appended to the agent's WAL
        quarantine_writes(reason)  or kept apart, quarantined (also what closing
                          does with an overlay still open)
        request(...)      one request to the instance (InstanceDied / HandlerError /
                          TimeoutError past its deadline)
        drain(timeout)    until the requests sent to it are answered
        on_failure(why)   called once when the instance dies, hangs or breaks the
                          protocol: the experiment's guardrail
    # leaving the block stops the instance, its zygote and its watchdog

A candidate has no standby and is never replaced: its death is the
verdict. Its ``evolution_intent`` frames are answered "ignored" (a version
under test may not start experiments of its own). The candidate's own
tasks (the heartbeat watchdog, the intent refuser) belong to a task group
that the ``async with`` block owns.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from project_o.runtime.zygote_client import ZygoteHandle
from project_o.supervisor.agent_host import AgentHost
from project_o.supervisor.instance_handle import InstanceDied, InstanceHandle
from project_o.supervisor.instance_start import launch
from project_o.supervisor.journal import OverlayJournal, ShadowJournal
from project_o.vault.quarantine import OverlayInfo, OverlayStatus
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
        self.experiment_id = ""
        self.shadow_journal = ShadowJournal()
        #: the canary's writes (None until a canary restores)
        self.overlay: OverlayJournal | None = None
        self._group = asyncio.TaskGroup()
        self._tasks: list[asyncio.Task[None]] = []
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False

    async def __aenter__(self) -> Self:
        await self._group.__aenter__()
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        traceback: TracebackType | None) -> None:
        try:
            await self.close()  # its tasks end with the instance
        finally:
            await self._group.__aexit__(kind, error, traceback)

    async def start(self, agent: Path, version: str, experiment_id: str) -> None:
        """Start the candidate's zygote (raises AgentLoadError if it does not import).

        ``experiment_id`` tags a canary's overlay of writes.
        """
        self.version, self.experiment_id = version, experiment_id
        self._zygote = await ZygoteHandle.start(agent, version, env=self.host.factory.env(),
                                                sandbox=self.host.config.sandbox_policy())

    async def spawn(self, role: str) -> InstanceHandle:
        """Fork the instance (replacing any previous one) and restore it from the vault."""
        assert self._zygote is not None
        await self._drop_instance()
        config = {**self.host.config.instance_config(), "stub_side_effects": role == SHADOW}
        instance = await launch(
            self._zygote, role=role, instance_id=f"{role}-{uuid.uuid4().hex[:8]}",
            version=self.version, owner=self, limits=self.host.config.limits, config=config,
            max_frame_size=self.host.config.max_frame_bytes, restore=self._restore,
            quotas=self.host.config.quotas,
        )
        self._tasks = [
            self._group.create_task(self._watchdog(instance), name=f"watchdog-{role}"),
            self._group.create_task(self._ignore_intents(instance), name=f"intents-{role}"),
        ]
        return instance

    async def _restore(self, instance: InstanceHandle) -> None:
        self.instance = instance  # from now on its death is the candidate's failure
        await self.host.journal.restore(instance, follow=False, on_point=self._fresh_journal)

    def _fresh_journal(self, point: RestorePoint) -> None:
        # Before the restore is sent: the instance writes as soon as it has applied it.
        if self.instance is not None and self.instance.role == CANARY:
            self._settle_overlay("quarantined", "replaced by a new canary instance")
            overlay = self.host.journal.vault.quarantine.create(
                self.version, self.experiment_id, point.last_sequence)
            self.overlay = OverlayJournal(overlay)
        else:
            self.shadow_journal = ShadowJournal(point.last_sequence)

    async def request(self, request_id: str, payload: Any, deadline_s: float) -> Any:
        """Send one request to the instance and await its output."""
        instance = self.instance
        if instance is None or not instance.alive:
            raise InstanceDied(self.failure or "the candidate has no live instance")
        self._in_flight += 1
        self._idle.clear()
        try:
            async with asyncio.timeout(deadline_s):
                return await instance.request(request_id, payload, deadline_s)
        finally:
            self._in_flight -= 1
            if not self._in_flight:
                self._idle.set()

    def kill(self, reason: str) -> None:
        """Kill the instance (a hang): the guardrail fires through :meth:`on_death`."""
        if self.instance is not None:
            self.instance.kill(reason)

    async def drain(self, timeout: float) -> None:
        """Wait (at most ``timeout`` s) until every request sent to the candidate is answered."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._idle.wait()

    # -- what the instance sends ------------------------------------------

    async def on_wal_entry(self, instance: InstanceHandle, message: Message) -> None:
        """Shadow: ack into the private journal. Canary: into its overlay, durably."""
        if instance.role == CANARY and self.overlay is not None:
            await self.overlay.write(instance, message)
        else:
            await self.shadow_journal.write(instance, message)

    async def on_checkpoint(self, instance: InstanceHandle, message: Message) -> None:
        """A candidate's state is never the agent's state: not written."""

    def on_llm_call(self, instance: InstanceHandle, message: Message) -> None:
        """Through the host's proxy, counted under the candidate's version and role."""
        self.host.llm.serve(instance, message)

    def on_death(self, instance: InstanceHandle, reason: str) -> None:
        """The guardrail: report the first death of the serving instance."""
        if instance is not self.instance or self._closing or self.failure is not None:
            return
        self.failure = reason
        self._on_failure(reason)

    # -- the canary's writes ------------------------------------------------

    async def promote_writes(self, reason: str) -> OverlayInfo | None:
        """Append the canary's writes to the agent's WAL (call once it is drained)."""
        info = self._settle_overlay("quarantined", "being promoted")
        if info is None:
            return None
        vault = self.host.journal.vault
        return await asyncio.to_thread(vault.quarantine.apply, info.id,
                                       vault.wal.submit_acknowledged, status="promoted",
                                       reason=reason)

    def quarantine_writes(self, reason: str) -> OverlayInfo | None:
        """Keep the canary's writes out of the agent's memory, tagged with ``reason``."""
        return self._settle_overlay("quarantined", reason)

    def _settle_overlay(self, status: OverlayStatus, reason: str) -> OverlayInfo | None:
        journal, self.overlay = self.overlay, None
        return None if journal is None else journal.overlay.settle(status, reason)

    # -- health -----------------------------------------------------------

    async def _watchdog(self, instance: InstanceHandle) -> None:
        """A timer, not a poll: heartbeats arrive on their own; silence is what it checks."""
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
        self._cancel_tasks()
        instance, self.instance = self.instance, None
        if instance is not None:
            self._closing = True
            instance.kill("replaced by the next stage")
            await instance.close()
            self._closing = False

    async def close(self) -> None:
        """Stop the instance and the zygote (again: nothing more happens)."""
        self._closing = True
        self._cancel_tasks()
        instance, self.instance = self.instance, None
        if instance is not None:
            with contextlib.suppress(Exception):
                await instance.send(Message("shutdown", {}))
            instance.kill("experiment over")
            await instance.close()
        zygote, self._zygote = self._zygote, None
        if zygote is not None:
            await zygote.close()
        self._settle_overlay("quarantined", "the experiment ended before a verdict on it")

    def _cancel_tasks(self) -> None:
        """End the instance's watchdog and intent refuser now (the watchdog would sleep on)."""
        for task in self._tasks:
            task.cancel()
        self._tasks = []
