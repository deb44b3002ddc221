"""The zygote of the version being served, and the instances forked from it.

::

    ensure_zygote() ── none, or it died ──► ZygoteHandle.start(agent, version, env)
    spawn(role) ──► zygote.fork ──► hello ──► restore (from the vault) ──► InstanceHandle
    exit_status(instance) ──► how it ended, as its zygote reported it (awaited, bounded)
    serve(agent, version) ──► a new zygote for a reload or a fall-back; the old one returned

The supervisor never imports agent code: everything agent-shaped happens in
the zygote and the instances it forks. Instances run with a scrubbed
environment; their LLM calls come back to the supervisor (``llm_proxy``).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psutil

from project_o.runtime.sandbox import scrubbed_env
from project_o.runtime.zygote_client import ExitStatus, ZygoteHandle
from project_o.supervisor.config import SupervisorConfig
from project_o.supervisor.events import EventLog
from project_o.supervisor.instance_handle import InstanceHandle, InstanceOwner
from project_o.supervisor.instance_start import launch

__all__ = ["EXIT_REPORT_WAIT", "InstanceFactory"]

#: how long to wait for the zygote's report of how an instance ended: it comes a
#: moment after the EOF, or never if the zygote died too
EXIT_REPORT_WAIT = 0.2

Restore = Callable[[InstanceHandle], Awaitable[None]]


class InstanceFactory:
    """Starts zygotes for the served version and forks restored instances from them."""

    def __init__(
        self, config: SupervisorConfig, version: str, events: EventLog, owner: InstanceOwner,
        restore: Restore,
    ) -> None:
        self.config = config
        self.version = version
        self.zygote: ZygoteHandle | None = None
        self.restarts = 0  # what each new instance reports as its restart count
        self._events = events
        self._owner = owner
        self._restore = restore
        self._lock = asyncio.Lock()
        self._ids = itertools.count(1)

    async def ensure_zygote(self) -> None:
        """Start a new zygote if there is none or it died (its instances died with it)."""
        async with self._lock:
            if self.zygote is not None:
                if self.zygote.alive:
                    return
                self._events.record("crash", "zygote", "the zygote died; starting a new one")
            self.zygote = await self.start_zygote(self.config.agent, self.version)
            self._say_what_is_missing(self.zygote)

    async def start_zygote(self, agent: Path, version: str) -> ZygoteHandle:
        """A new zygote for ``agent`` (not yet the one instances are forked from)."""
        return await ZygoteHandle.start(agent, version, env=self.env(),
                                        sandbox=self.config.sandbox_policy())

    def sandbox(self) -> dict[str, Any]:
        """The serving zygote's sandbox report (``enabled``, ``active``, ``missing``, ``layers``)."""
        if self.zygote is None or not self.zygote.sandbox:
            return {"enabled": self.config.sandbox, "active": [], "layers": [],
                    "missing": {"zygote": "no zygote running yet"}}
        return self.zygote.sandbox

    def _say_what_is_missing(self, zygote: ZygoteHandle) -> None:
        report = zygote.sandbox
        if not report.get("enabled", True):
            self._events.record("sandbox", "zygote", "the sandbox is OFF (--no-sandbox): "
                                "agent code runs with the supervisor's rights")
        elif report.get("missing"):
            missing = "; ".join(f"{name}: {why}" for name, why in report["missing"].items())
            self._events.record("sandbox", "zygote", f"layers not applied: {missing}")

    def serve(
        self, zygote: ZygoteHandle | None, agent: Path, version: str,
    ) -> tuple[ZygoteHandle | None, Path, str]:
        """Fork from ``zygote`` for ``version`` from now on; returns what was served before."""
        old = self.zygote, self.config.agent, self.version
        self.zygote, self.config.agent, self.version = zygote, agent, version
        return old

    async def spawn(self, role: str) -> InstanceHandle:
        """Fork, hello, restore: a ready instance of the served version in ``role``."""
        assert self.zygote is not None
        instance = await launch(
            self.zygote, role=role, instance_id=f"{role}-{next(self._ids)}",
            version=self.version, owner=self._owner, limits=self.config.limits,
            config=self.config.instance_config(), max_frame_size=self.config.max_frame_bytes,
            restore=self._restore, quotas=self.config.quotas,
        )
        instance.restarts = self.restarts
        return instance

    def zygote_running(self) -> bool:
        """The zygote is alive, checked with the kernel (our own EOF may still be queued)."""
        zygote = self.zygote
        if zygote is None or not zygote.alive:
            return False
        try:
            return bool(psutil.Process(zygote.pid).status() != psutil.STATUS_ZOMBIE)
        except psutil.NoSuchProcess:
            return False

    def env(self) -> dict[str, str]:
        """The scrubbed environment agent code runs with (no LLM key or endpoint: see llm_proxy)."""
        return scrubbed_env()

    async def close(self) -> None:
        """Close the zygote (its instances die with it)."""
        if self.zygote is not None:
            await self.zygote.close()


async def exit_status(instance: InstanceHandle) -> ExitStatus | None:
    """How ``instance`` ended, as its zygote reports it a moment after the EOF (or None)."""
    exited = instance.exited
    if exited is None:
        return None
    try:
        async with asyncio.timeout(EXIT_REPORT_WAIT):
            return await asyncio.shield(exited)
    except TimeoutError:
        return None
