"""The supervisor process: vault owner, agent host, gateway, in one event loop.

Started by the heart (``project-o run``) as ``python -m project_o.supervisor``.
It never imports agent code; a crash of anything below it is an event,
not an outage. On SIGTERM/SIGINT it writes a final checkpoint and exits 0;
on a fatal vault error it exits with :data:`EXIT_VAULT_FATAL` so the heart
restarts it and recovery runs from what is on disk.

As the gateway's :class:`~project_o.supervisor.api.AgentService`::

    submit(input, on_event=)   ──▶ Router: its policy ──▶ the host's Dispatcher (re-dispatch,
                                   streaming); while an experiment runs, its policy
                                   also sends a share to the candidate
    feedback(id, score, ...)   ──▶ version that answered id (the host's AnswerBook)
                               ──▶ catalog.add_feedback          (durable: "stored")
                               ──▶ deliver_feedback on the pool  (the hooks ran: "delivered")
    versions()                 ──▶ catalog.list_versions + the serving one
    create_experiment(body)    ──▶ EvolutionControl: shadow / canary / promotion / rollback
    experiment(id) / experiments() / approve_experiment(id)
    status() / metrics()       ──▶ a snapshot / SupervisorMetrics.render()
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, cast

from project_o.errors import GatewayError, UnknownRequest, VaultError
from project_o.evolution.perception import Thresholds
from project_o.supervisor.agent_host import RECENT_ANSWERS, AgentHost
from project_o.supervisor.api import (
    AgentService,
    EventSink,
    FeedbackReceipt,
    MetricsText,
    RequestResult,
)
from project_o.supervisor.config import STATE_FILE, SupervisorConfig
from project_o.supervisor.events import EventLog
from project_o.supervisor.evolution_control import EvolutionControl
from project_o.supervisor.feedback_delivery import deliver_feedback
from project_o.supervisor.metrics import LiveInstance, LiveState, SupervisorMetrics
from project_o.supervisor.parts import Part
from project_o.supervisor.quarantine_control import QuarantineControl
from project_o.supervisor.routing import Router
from project_o.supervisor.spec import ChildSpec, EventKind, Strategy
from project_o.supervisor.startup import (
    EXIT_VAULT_UNAVAILABLE,
    StartupError,
    report_ready,
    start_failure,
    vault_holder,
)
from project_o.supervisor.tree import SupervisionTree
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
    def ended(self) -> asyncio.Future[None]:
        """Resolves when it stops serving (with the error, if one ended it)."""
        ...


#: builds the front that serves ``service``, once its agent host is up
FrontFactory = Callable[[AgentService, SupervisorConfig], Front]


class Supervisor:
    """One supervisor: implements the gateway's ``AgentService`` protocol."""

    def __init__(
        self, config: SupervisorConfig, front: FrontFactory, *, ready_fd: int | None = None,
    ) -> None:
        self.config = config
        self._front = front
        self._ready_fd = ready_fd
        self.tree: SupervisionTree | None = None
        self._fatal: asyncio.Future[BaseException] | None = None
        self._escalated: str | None = None
        self.vault: Vault | None = None
        self.events: EventLog | None = None
        self.host: AgentHost | None = None
        self.router: Router | None = None
        self.evolution: EvolutionControl | None = None
        self.quarantine: QuarantineControl | None = None
        self.gateway: Front | None = None
        self.meter = SupervisorMetrics()
        self._stop = asyncio.Event()

    async def submit(
        self, input: Any, *, deadline_s: float | None = None, request_id: str | None = None,
        on_event: EventSink | None = None,
    ) -> RequestResult:
        """Serve one request through the agent host."""
        assert self.router is not None
        return await self.router.submit(input, deadline_s, request_id, on_event)

    async def feedback(self, request_id: str, score: float, comment: str) -> FeedbackReceipt:
        """Store feedback on a recent request with its version, then run the agent's hooks."""
        host, vault = self.host, self.vault
        assert host is not None and vault is not None
        version = host.answers.version_of(request_id)
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
        if self.evolution is not None:
            self.evolution.on_feedback(version, score)
        reason = await deliver_feedback(host.pool, {
            "request_id": request_id, "score": score, "comment": comment, "version": version,
        }, self.config.request_deadline, host.events)
        return FeedbackReceipt(stored=True, delivered=reason is None, version=version,
                               reason=reason)

    async def versions(self) -> dict[str, Any]:
        """Every version in the catalog, oldest first, and the one serving."""
        assert self.host is not None and self.vault is not None
        serving = self.host.factory.version
        records = await asyncio.to_thread(self.vault.catalog.list_versions)
        return {"serving": serving, "versions": [
            {"id": r.id, "status": r.status, "reason": r.reason, "parents": list(r.parents),
             "operator": r.operator, "created_at": r.created_at, "serving": r.id == serving}
            for r in records
        ]}

    async def create_experiment(self, body: dict[str, Any]) -> dict[str, Any]:
        """Start a shadow or canary experiment (``POST /v1/evolution/experiments``)."""
        assert self.evolution is not None
        return await self.evolution.create(body)

    async def approve_experiment(self, experiment_id: str) -> dict[str, Any]:
        """Start an experiment the agent proposed (autonomy "propose")."""
        assert self.evolution is not None
        return await self.evolution.approve(experiment_id)

    async def experiment(self, experiment_id: str) -> dict[str, Any]:
        """One experiment, live or from the catalog."""
        assert self.evolution is not None
        return await self.evolution.ledger.get(experiment_id)

    async def experiments(self) -> dict[str, Any]:
        """Every experiment, newest first."""
        assert self.evolution is not None
        return await self.evolution.ledger.list()

    async def overlays(self) -> dict[str, Any]:
        """The overlays of canary writes (``GET /v1/quarantine``)."""
        assert self.quarantine is not None
        return await self.quarantine.overlays()

    async def overlay(self, overlay_id: str) -> dict[str, Any]:
        """One overlay and its writes (``GET /v1/quarantine/{id}``)."""
        assert self.quarantine is not None
        return await self.quarantine.overlay(overlay_id)

    async def apply_overlay(self, overlay_id: str) -> dict[str, Any]:
        """Apply quarantined canary writes (``POST /v1/quarantine/{id}/apply``)."""
        assert self.quarantine is not None
        return await self.quarantine.apply(overlay_id)

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
            "version": host.factory.version,
            "instances": host.pool.describe(),
            "restarts": host.factory.restarts,
            "tree": self._describe_tree(),
            "sandbox": host.factory.sandbox(),
            "vault": {
                "path": str(vault.path), "last_sequence": vault.last_sequence,
                "durable_sequence": vault.wal.durable_sequence,
                "last_checkpoint": host.journal.last_checkpoint,
            },
            "events": self.events.recent(),
        }

    def _describe_tree(self) -> dict[str, Any]:
        """The supervision tree as it runs: each part, its status, restarts and children."""
        assert self.tree is not None
        children = []
        for info in self.tree.which_children():
            child: dict[str, Any] = {
                "id": info.id, "status": info.status.value, "restarts": info.restarts,
                "last_exit": None if info.last_exit is None else info.last_exit.detail,
            }
            if info.id == "agent" and self.host is not None:
                child.update(self.host.describe_tree())
            children.append(child)
        return {"id": "supervisor", "pid": os.getpid(), "strategy": self.tree.strategy.value,
                "max_restarts": 0, "children": children}

    async def run(self) -> int:
        """Start the tree, serve until told to stop (or a part fails); the exit status.

        A failure while starting is reported in one message and ends the
        process with the status of :mod:`~project_o.supervisor.startup`
        (the heart passes it on and does not restart). Once up, a part that
        fails escalates: everything stops and the process exits
        :data:`EXIT_VAULT_FATAL`, so the heart restarts it and recovery
        runs from what is on disk.
        """
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        self._fatal = loop.create_future()
        self.tree = self._build_tree()
        try:
            await self.tree.start()
        except StartupError as exc:
            print(f"project-o: {exc}", file=sys.stderr, flush=True)
            self._close()
            return exc.exit_code
        report_ready(self._ready_fd)
        assert self.host is not None and self.gateway is not None
        print(f"project-o: serving {self.host.config.agent.name} (version "
              f"{self.host.factory.version}) on "
              f"http://{self.config.host}:{self.gateway.port} — supervisor pid {os.getpid()}",
              flush=True)
        await self._stop.wait()
        if self._escalated is None:
            await self.tree.stop()
        await self.tree.wait()
        self._close()
        if self._escalated is None:
            return 0
        print(f"project-o: {self._escalated}", file=sys.stderr, flush=True)
        return EXIT_VAULT_FATAL

    def _build_tree(self) -> SupervisionTree:
        """heart -> supervisor -> vault, agent, evolution, gateway (each needs the ones before)."""
        specs = [
            ChildSpec(child_id, _reporting_start(child_id, start), shutdown="infinity")
            for child_id, start in (("vault", self._start_vault), ("agent", self._start_agent),
                                    ("evolution", self._start_evolution),
                                    ("gateway", self._start_gateway))
        ]
        # No restarts inside: the parts share this process, and a vault that failed an
        # fsync cannot be trusted again in it. A failing part escalates to the heart,
        # which starts a fresh supervisor that recovers from disk.
        return SupervisionTree(specs, strategy=Strategy.REST_FOR_ONE, max_restarts=0,
                               max_seconds=1.0, on_event=self._on_tree_event,
                               on_escalate=self._on_escalate, name="supervisor")

    def _on_tree_event(self, kind: EventKind, child_id: str | None, reason: str) -> None:
        # A failed start is reported once, by run(); an exit or escalation is news.
        if kind in (EventKind.EXIT, EventKind.ESCALATE) and self.events is not None:
            self.events.record(f"supervisor_{kind.value}", str(child_id), reason)

    def _on_escalate(self, why: str) -> None:
        fatal = self._fatal
        vault_failed = fatal is not None and fatal.done() and not fatal.cancelled()
        self._escalated = f"vault failure: {fatal.result()}" if vault_failed and fatal else why
        self._stop.set()

    async def _start_vault(self) -> Part:
        config = self.config
        try:
            vault = await asyncio.to_thread(Vault.open, config.vault,
                                            durability=cast(Durability, config.durability),
                                            keyring=config.keyring)
        except VaultError as exc:
            holder = vault_holder(config.vault)
            if not holder:
                raise
            raise StartupError(
                f"the vault {config.vault} is in use by {holder}; stop that one first "
                "(or serve another vault with --vault)", EXIT_VAULT_UNAVAILABLE) from exc
        self.vault = vault
        self.events = EventLog(vault.catalog)
        self.events.subscribe(self.meter.on_event)
        self.events.record("supervisor_start", str(os.getpid()),
                           f"recovering from vault at sequence {vault.last_sequence}")
        assert self._fatal is not None
        return Part(vault, stop=self._close_vault, failure=self._fatal)

    async def _close_vault(self) -> None:
        await asyncio.to_thread(self._close)

    async def _start_agent(self) -> Part:
        config, vault, events = self.config, self.vault, self.events
        assert vault is not None and events is not None and self._fatal is not None
        book = VersionBook(vault.catalog, config.vault)
        version = await asyncio.to_thread(book.register, config.agent)
        promoted = await asyncio.to_thread(book.promoted_descendant, version)
        if promoted is not None:  # keep serving what evolution promoted
            config.agent = await asyncio.to_thread(book.materialize, promoted)
            events.record("resume", promoted.id,
                          f"serving version {promoted.id}, promoted over {version}")
            version = promoted.id
        host = AgentHost(config, vault, events, version, book, self.meter, fatal=self._fatal)
        self.host = host
        self.meter.set_probe(self._live_state)
        await host.start()
        return Part(host, stop=self._stop_host, failure=host.tasks.failed)

    async def _stop_host(self) -> None:
        host, fatal = self.host, self._fatal
        assert host is not None
        main = host.pool.main
        if fatal is not None and fatal.done() and main is not None:
            main.kill("vault failed")  # no final checkpoint into a failed vault
        await host.stop()

    async def _start_evolution(self) -> Part:
        host, vault, events = self.host, self.vault, self.events
        assert host is not None and vault is not None and events is not None
        router = Router(host.dispatcher)
        evolution = EvolutionControl(host, vault, events, router, autonomy=self.config.autonomy,
                                     thresholds=_thresholds(self.config))
        # Safe abort: a candidate left running by a killed supervisor never serves again.
        await asyncio.to_thread(evolution.ledger.abort_leftovers)
        await evolution.start()
        self.router, self.evolution = router, evolution
        self.quarantine = QuarantineControl(vault, self._reload_main, events)
        host.listen_intents(evolution.on_intent)
        return Part(evolution, stop=evolution.stop, failure=evolution.failed)

    async def _reload_main(self, reason: str) -> None:
        host = self.host
        assert host is not None
        await host.reloads.reload(host.config.agent, host.dispatcher.version, reason)

    async def _start_gateway(self) -> Part:
        config = self.config
        gateway = self._front(self, config)
        await gateway.start()
        self.gateway = gateway
        self._write_state_file()
        # A server that stops serving on its own is a failed part: the tree sees it.
        gone: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()
        gateway.ended().add_done_callback(lambda ended: _settle(gone, _why_gone(ended)))
        return Part(gateway, stop=gateway.stop, failure=gone)

    def _live_state(self) -> LiveState | None:
        host, vault = self.host, self.vault
        if host is None or vault is None:
            return None
        instances = [LiveInstance(i.role, i.version, i.rss_bytes) for i in host.pool.live()]
        return LiveState(serving_version=host.factory.version, restarts=host.factory.restarts,
                         wal_last_sequence=vault.last_sequence,
                         wal_durable_sequence=vault.wal.durable_sequence, instances=instances)

    def _close(self) -> None:
        """Close the event log and the vault if they are open (both idempotent)."""
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


def _reporting_start(
    child_id: str, start: Callable[[], Awaitable[Part]],
) -> Callable[[], Awaitable[Part]]:
    """``start``, with what it raises turned into the :class:`StartupError` for ``child_id``."""
    async def reporting() -> Part:
        try:
            return await start()
        except Exception as exc:
            raise start_failure(child_id, exc) from exc
    return reporting


def _why_gone(ended: asyncio.Future[None]) -> BaseException:
    error = None if ended.cancelled() else ended.exception()
    return GatewayError(f"the gateway stopped serving{f': {error}' if error else ''}")


def _settle(future: asyncio.Future[BaseException], error: BaseException) -> None:
    if not future.done():
        future.set_result(error)


def _heart_pid() -> int | None:
    value = os.environ.get("PROJECT_O_HEART_PID")
    return int(value) if value and value.isdigit() else None


def _thresholds(config: SupervisorConfig) -> Thresholds | None:
    if config.perception_p95_ms is None:
        return None
    return Thresholds(p95_latency_ms=config.perception_p95_ms)
