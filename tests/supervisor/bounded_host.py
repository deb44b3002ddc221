"""The supervisor's side of one instance, as its own process, for the bounds tests.

``python -m tests.supervisor.bounded_host FD VAULT CONFIG_JSON``: an
:class:`InstanceHandle` on the socket ``FD`` with a real :class:`Journal`
(main) or :class:`ShadowJournal` (shadow) on the vault at ``VAULT``. It
serves until the instance is killed, then prints one JSON line: the
reason, the peak RSS of this process (``VmHWM``), what it streamed
and kept, and exits 0 (it survived). CONFIG_JSON: ``pid`` (the process
the handle kills: a stand-in for the instance), ``role``, ``quotas``,
``stream`` (send one streaming request first), ``checkpoint`` (ask for one).
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from pathlib import Path
from typing import Any

from project_o.supervisor.bounds import Quotas
from project_o.supervisor.config import MAX_FRAME_BYTES
from project_o.supervisor.instance_handle import InstanceDied, InstanceHandle
from project_o.supervisor.journal import Journal, ShadowJournal
from project_o.supervisor.metrics import SupervisorMetrics
from project_o.vault import Vault
from project_o.wire import Message


class Owner:
    """Routes an instance's writes as the agent host (main) or a candidate (shadow) does."""

    def __init__(self, journal: Journal, shadow: ShadowJournal | None) -> None:
        self.journal = journal
        self.shadow = shadow
        self.death: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def on_wal_entry(self, instance: InstanceHandle, message: Message) -> None:
        if self.shadow is not None:
            await self.shadow.write(instance, message)
        else:
            await self.journal.write(instance, message, tail=True)

    async def on_checkpoint(self, instance: InstanceHandle, message: Message) -> None:
        await self.journal.checkpoint(instance, message)

    def on_death(self, instance: InstanceHandle, reason: str) -> None:
        if not self.death.done():
            self.death.set_result(reason)


async def serve(fd: int, vault_path: str, config: dict[str, Any]) -> dict[str, Any]:
    vault = Vault.open(vault_path)
    try:
        journal = Journal(vault, SupervisorMetrics(), lambda error: None)
        shadow = ShadowJournal() if config.get("role") == "shadow" else None
        owner = Owner(journal, shadow)
        reader, writer = await asyncio.open_unix_connection(sock=socket.socket(fileno=fd))
        handle = InstanceHandle(
            pid=int(config["pid"]), role=str(config.get("role", "main")), version="v1",
            instance_id="fake-1", reader=reader, writer=writer, owner=owner,
            max_frame_size=MAX_FRAME_BYTES, quotas=Quotas(**config.get("quotas", {})),
        )
        handle.start_reading()
        events: list[Any] = []
        request = None
        if config.get("stream"):
            request = asyncio.create_task(handle.request("r1", {}, 600.0, events.append))
        if config.get("checkpoint"):
            await handle.send(Message("checkpoint", {"id": "c1"}))
        reason = await asyncio.wait_for(owner.death, 300)
        if request is not None:
            try:
                await request
            except InstanceDied:
                pass
        await handle.close()
        return {"reason": reason, "max_rss_kb": _peak_rss_kb(),
                "events": len(events), "last_sequence": vault.last_sequence,
                "shadow_kept": None if shadow is None else len(shadow.entries),
                "shadow_kept_bytes": None if shadow is None else shadow.kept_bytes}
    finally:
        vault.close()


def _peak_rss_kb() -> int:
    """This process's peak RSS since its exec (``VmHWM``).

    Not ``ru_maxrss``: Linux carries the pre-exec memory's peak into it, so a
    host started from a big pytest process would report pytest's size.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def main() -> None:
    fd, vault_path, config = int(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])
    report = asyncio.run(serve(fd, vault_path, config))
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()

