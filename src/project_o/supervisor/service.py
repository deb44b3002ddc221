"""The supervisor process: vault owner, agent host, gateway, in one event loop.

Started by the heart (``project-o run``) as ``python -m project_o.supervisor``.
It never imports agent code; a crash of anything below it is an event,
not an outage. On SIGTERM/SIGINT it writes a final checkpoint and exits 0;
on a fatal vault error it exits with :data:`EXIT_VAULT_FATAL` so the heart
restarts it and recovery runs from what is on disk.

As the gateway's :class:`~project_o.supervisor.api.AgentService`::

    submit(input, on_event=)   ──▶ AgentHost.submit (routing, re-dispatch, streaming)
    feedback(id, score, ...)   ──▶ version that answered id (AgentHost, in memory)
                               ──▶ catalog.add_feedback          (durable: "stored")
                               ──▶ AgentHost.deliver_feedback    (the hooks ran: "delivered")
    versions()                 ──▶ catalog.list_versions + the serving one
    create_experiment(body)    ──▶ Arbiter: shadow / canary / promotion / rollback;
    experiment(id) / experiments() / approve_experiment(id)   while one runs, submit()
                                   goes through the arbiter (its share to the candidate)
    status() / metrics()       ──▶ a snapshot / SupervisorMetrics.render()
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Callable
from typing import Any, Protocol, cast

from project_o.errors import UnknownRequest
from project_o.evolution.perception import Thresholds
from project_o.supervisor.agent_host import RECENT_ANSWERS, AgentHost
from project_o.supervisor.api import (
    AgentService,
    EventSink,
    FeedbackReceipt,
    MetricsText,
    RequestResult,
)
from project_o.supervisor.arbiter import Arbiter
from project_o.supervisor.config import STATE_FILE, SupervisorConfig
from project_o.supervisor.events import EventLog
from project_o.supervisor.metrics import LiveInstance, LiveState, SupervisorMetrics
from project_o.supervisor.versions import VersionBook
from project_o.vault import Vault
from project_o.vault.vault import Durability

__all__ = ["EXIT_VAULT_FATAL", "Front", "FrontFactory", "Supervisor"]

#: exit status after an fsync/write failure (EX_SOFTWARE): the heart restarts us
EXIT_VAULT_FATAL = 70


class Front(Protocol):
    """The HTTP gateway as the supervisor runs it (a ``project_o.gateway.GatewayServer``).

    The process entry point (``python -m project_o.supervisor``) builds it:
    the gateway sits above the supervisor, so the supervisor never imports
    it (see "Layers" in docs/design.md).
    """

    @property
    def port(self) -> int: ...
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


#: builds the front that serves ``service``, once its agent host is up
FrontFactory = Callable[[AgentService, SupervisorConfig], Front]


class Supervisor:
    """One supervisor: implements the gateway's ``AgentService`` protocol."""

    def __init__(self, config: SupervisorConfig, front: FrontFactory) -> None:
        self.config = config
        self._front = front
        self.vault: Vault | None = None
        self.events: EventLog | None = None
        self.host: AgentHost | None = None
        self.arbiter: Arbiter | None = None
        self.gateway: Front | None = None
        self.meter = SupervisorMetrics()
        self._stop = asyncio.Event()

    async def submit(
        self, input: Any, *, deadline_s: float | None = None, request_id: str | None = None,
        on_event: EventSink | None = None,
    ) -> RequestResult:
        """Serve one request through the agent host."""
        assert self.arbiter is not None
        return await self.arbiter.submit(input, deadline_s, request_id, on_event)

    async def feedback(self, request_id: str, score: float, comment: str) -> FeedbackReceipt:
        """Store feedback on a recent request with its version, then run the agent's hooks."""
        host, vault = self.host, self.vault
        assert host is not None and vault is not None
        version = host.version_of(request_id)
        if version is None:
            raise UnknownRequest(
                f"no recent request has the id {request_id!r}; feedback is taken for the "
                f"last {RECENT_ANSWERS} requests this supervisor answered (use the "
                "request_id of a reply from /v1/requests or /v1/stream)",
                request_id=request_id,
            )
        await asyncio.to_thread(vault.catalog.add_feedback, request_id, score,
                                version_id=version, comment=comment)
        self.meter.observe_feedback(version, score)
        if self.arbiter is not None:
            self.arbiter.on_feedback(version, score)
        reason = await host.deliver_feedback({
            "request_id": request_id, "score": score, "comment": comment, "version": version,
        })
        return FeedbackReceipt(stored=True, delivered=reason is None, version=version,
                               reason=reason)

    async def versions(self) -> dict[str, Any]:
        """Every version in the catalog, oldest first, and the one serving."""
        assert self.host is not None and self.vault is not None
        serving = self.host.version
        records = await asyncio.to_thread(self.vault.catalog.list_versions)
        return {"serving": serving, "versions": [
            {"id": r.id, "status": r.status, "reason": r.reason, "parents": list(r.parents),
             "operator": r.operator, "created_at": r.created_at, "serving": r.id == serving}
            for r in records
        ]}

    async def create_experiment(self, body: dict[str, Any]) -> dict[str, Any]:
        """Start a shadow or canary experiment (``POST /v1/evolution/experiments``)."""
        assert self.arbiter is not None
        return await self.arbiter.create(body)

    async def approve_experiment(self, experiment_id: str) -> dict[str, Any]:
        """Start an experiment the agent proposed (autonomy "propose")."""
        assert self.arbiter is not None
        return await self.arbiter.approve(experiment_id)

    async def experiment(self, experiment_id: str) -> dict[str, Any]:
        """One experiment, live or from the catalog."""
        assert self.arbiter is not None
        return await self.arbiter.get(experiment_id)

    async def experiments(self) -> dict[str, Any]:
        """Every experiment, newest first."""
        assert self.arbiter is not None
        return await self.arbiter.list()

    def metrics(self) -> MetricsText:
        """Prometheus text for `GET /metrics`."""
        return self.meter.render()

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
        stop: asyncio.Future[Any] = asyncio.ensure_future(self._stop.wait())
        fatal_error: asyncio.Future[Any] = self.host.fatal
        await asyncio.wait({stop, fatal_error}, return_when=asyncio.FIRST_COMPLETED)
        fatal = self.host.fatal.done()
        if fatal:
            print(f"project-o: vault failure: {self.host.fatal.result()}", file=sys.stderr)
        stop.cancel()
        await self._shutdown(final_checkpoint=not fatal)
        return EXIT_VAULT_FATAL if fatal else 0

    async def _start(self) -> None:
        config = self.config
        vault = await asyncio.to_thread(Vault.open, config.vault,
                                        durability=cast(Durability, config.durability))
        self.vault = vault
        self.events = EventLog(vault.catalog)
        self.events.subscribe(self.meter.on_event)
        self.events.record("supervisor_start", str(os.getpid()),
                           f"recovering from vault at sequence {vault.last_sequence}")
        book = VersionBook(vault.catalog, config.vault)
        version = await asyncio.to_thread(book.register, config.agent)
        promoted = await asyncio.to_thread(book.promoted_descendant, version)
        if promoted is not None:  # keep serving what evolution promoted
            config.agent = await asyncio.to_thread(book.materialize, promoted)
            self.events.record("resume", promoted.id,
                               f"serving version {promoted.id}, promoted over {version}")
            version = promoted.id
        self.host = AgentHost(config, vault, self.events, version, book, self.meter)
        self.arbiter = Arbiter(self.host, vault, self.events,
                               autonomy=config.autonomy, thresholds=_thresholds(config))
        # Safe abort: a candidate left running by a killed supervisor never serves again.
        await asyncio.to_thread(self.arbiter.abort_leftovers)
        self.host.on_intent = self.arbiter.on_intent
        self.meter.set_probe(self._live_state)
        await self.host.start()
        self.gateway = self._front(self, config)
        await self.gateway.start()
        self._write_state_file()
        print(f"project-o: serving {self.host.config.agent.name} (version {self.host.version}) on "
              f"http://{config.host}:{self.gateway.port} — supervisor pid {os.getpid()}",
              flush=True)

    def _live_state(self) -> LiveState | None:
        host, vault = self.host, self.vault
        if host is None or vault is None:
            return None
        instances = [LiveInstance(i.role, i.version, i.rss_bytes)
                     for i in (host.main, host.standby) if i is not None and i.alive]
        return LiveState(serving_version=host.version, restarts=host.restarts,
                         wal_last_sequence=vault.last_sequence,
                         wal_durable_sequence=vault.wal.durable_sequence, instances=instances)

    async def _shutdown(self, *, final_checkpoint: bool) -> None:
        if self.gateway is not None:
            with contextlib.suppress(Exception):
                await self.gateway.stop()
        if self.arbiter is not None:
            with contextlib.suppress(Exception):
                await self.arbiter.stop()
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


def _thresholds(config: SupervisorConfig) -> Thresholds | None:
    if config.perception_p95_ms is None:
        return None
    return Thresholds(p95_latency_ms=config.perception_p95_ms)
