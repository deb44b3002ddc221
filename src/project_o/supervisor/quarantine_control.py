"""Quarantined canary writes, as the API serves them: list, show, apply.

::

    GET  /v1/quarantine            overlays(): every overlay, oldest first
    GET  /v1/quarantine/{id}       overlay(id): its manifest and its writes
    POST /v1/quarantine/{id}/apply apply(id): the writes appended to the agent's WAL,
                                   then the main reloaded from the vault so it serves them

The overlays themselves, and why a canary's writes wait there, are in
:mod:`project_o.vault.quarantine`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Final

from project_o.supervisor.events import EventLog
from project_o.vault import Vault

__all__ = ["QuarantineControl"]

#: writes one ``GET /v1/quarantine/{id}`` shows (the count is always exact)
WRITES_SHOWN: Final = 1000


class QuarantineControl:
    """What the API does with the vault's overlays of canary writes."""

    def __init__(self, vault: Vault, reload_main: Callable[[str], Awaitable[None]],
                 events: EventLog) -> None:
        """``reload_main(reason)`` reloads the served version from the vault."""
        self.vault, self.reload_main, self.events = vault, reload_main, events

    async def overlays(self) -> dict[str, Any]:
        """``{"overlays": [manifest, ...]}``, oldest first."""
        infos = await asyncio.to_thread(self.vault.quarantine.overlays)
        return {"overlays": [info.to_dict() for info in infos]}

    async def overlay(self, overlay_id: str) -> dict[str, Any]:
        """One overlay's manifest and its first :data:`WRITES_SHOWN` writes."""
        return await asyncio.to_thread(self._overlay, overlay_id)

    def _overlay(self, overlay_id: str) -> dict[str, Any]:
        quarantine = self.vault.quarantine
        info = quarantine.get(overlay_id)
        writes: list[dict[str, Any]] = []
        for write in quarantine.writes(overlay_id):
            if len(writes) == WRITES_SHOWN:
                break
            writes.append(write.to_json())
        return {**info.to_dict(), "writes_shown": writes}

    async def apply(self, overlay_id: str) -> dict[str, Any]:
        """Append a quarantined overlay's writes to the agent's WAL; the main reloads."""
        info = await asyncio.to_thread(self.vault.quarantine.apply, overlay_id,
                                       self.vault.wal.submit_acknowledged)
        self.events.record("writes_applied", info.experiment_id,
                           f"quarantined writes {info.id} of version {info.version} applied "
                           "by hand", overlay=info.id)
        # The main never saw these writes: it restores them from the vault.
        await self.reload_main(f"applied the quarantined writes {info.id}")
        return info.to_dict()

