"""The supervisor process: vault owner, agent host, gateway, in one event loop.

Started by the heart (``project-o run``) as ``python -m project_o.supervisor``.
It never imports agent code; a crash of anything below it is an event,
not an outage. On SIGTERM/SIGINT it writes a final checkpoint and exits 0;
on a fatal vault error it exits with :data:`EXIT_VAULT_FATAL` so the heart
restarts it and recovery runs from what is on disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from project_o.client import STATE_FILE
from project_o.gateway import GatewayServer, create_app
from project_o.gateway.auth import resolve_token
from project_o.gateway.service import RequestResult
from project_o.supervisor.agent_host import AgentHost
from project_o.supervisor.config import SupervisorConfig
from project_o.supervisor.events import EventLog
from project_o.supervisor.versions import VersionBook
from project_o.vault import Vault

__all__ = ["Supervisor", "EXIT_VAULT_FATAL"]

#: exit status after an fsync/write failure (EX_SOFTWARE): the heart restarts us
EXIT_VAULT_FATAL = 70


class Supervisor:
    """One supervisor: implements the gateway's ``AgentService`` protocol."""

    def __init__(self, config: SupervisorConfig) -> None:
        self.config = config
        self.vault: Vault | None = None
        self.events: EventLog | None = None
        self.host: AgentHost | None = None
        self.gateway: GatewayServer | None = None
        self._stop = asyncio.Event()

    async def submit(self, input: Any, *, deadline_s: float | None = None) -> RequestResult:
        """Serve one request through the agent host."""
        assert self.host is not None
        return await self.host.submit(input, deadline_s)

    def status(self) -> dict[str, Any]:
        """The picture `GET /v1/status` shows."""
        host, vault = self.host, self.vault
        assert host is not None and vault is not None and self.events is not None
        return {
            "supervisor_pid": os.getpid(),
            "heart_pid": _heart_pid(),
            "agent": str(self.config.agent),
            "version": host.version,
            "instances": host.describe(),
            "restarts": host.restarts,
            "vault": {
                "path": str(vault.path), "last_sequence": vault.last_sequence,
                "durable_sequence": vault.wal.durable_sequence,
                "last_checkpoint": host.last_checkpoint,
            },
            "events": self.events.recent(),
        }

    async def run(self) -> int:
        """Serve until told to stop; returns the process exit status."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        await self._start()
        assert self.host is not None
        stop = asyncio.ensure_future(self._stop.wait())
        done, _ = await asyncio.wait({stop, self.host.fatal}, return_when=asyncio.FIRST_COMPLETED)
        fatal = self.host.fatal.done()
        if fatal:
            print(f"project-o: vault failure: {self.host.fatal.result()}", file=sys.stderr)
        stop.cancel()
        await self._shutdown(final_checkpoint=not fatal)
        return EXIT_VAULT_FATAL if fatal else 0

    async def _start(self) -> None:
        config = self.config
        self.vault = await asyncio.to_thread(Vault.open, config.vault, durability=config.durability)
        self.events = EventLog(self.vault.catalog)
        token, created = resolve_token(config.vault)
        if created:
            print(f"project-o: API token written to {config.vault / 'token'}: {token}", flush=True)
        self.events.record("supervisor_start", str(os.getpid()),
                           f"recovering from vault at sequence {self.vault.last_sequence}")
        book = VersionBook(self.vault.catalog, config.vault)
        version = await asyncio.to_thread(book.register, config.agent)
        self.host = AgentHost(config, self.vault, self.events, version, book)
        await self.host.start()
        app = create_app(self, token=token, max_body_bytes=config.max_body_bytes)
        self.gateway = GatewayServer(app, host=config.host, port=config.port)
        await self.gateway.start()
        self._write_state_file()
        print(f"project-o: serving {self.host.config.agent.name} (version {self.host.version}) on "
              f"http://{config.host}:{self.gateway.port} — supervisor pid {os.getpid()}",
              flush=True)

    async def _shutdown(self, *, final_checkpoint: bool) -> None:
        if self.gateway is not None:
            with contextlib.suppress(Exception):
                await self.gateway.stop()
        if self.host is not None:
            if not final_checkpoint and self.host.main is not None:
                self.host.main.kill("vault failed")
            await self.host.stop()
        if self.events is not None:
            self.events.close()
        if self.vault is not None:
            with contextlib.suppress(Exception):
                self.vault.close()

    def _write_state_file(self) -> None:
        assert self.gateway is not None
        state = {"pid": os.getpid(), "heart_pid": _heart_pid(), "host": self.config.host,
                 "port": self.gateway.port}
        path = self.config.vault / STATE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, path)  # readers never see half a file; losing it on a crash is harmless


def _heart_pid() -> int | None:
    value = os.environ.get("PROJECT_O_HEART_PID")
    return int(value) if value and value.isdigit() else None
