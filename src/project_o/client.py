"""A small HTTP client for a running supervisor (used by `project-o ask/status/evolve`).

It finds the supervisor through ``VAULT/supervisor.json`` and the token
through ``PROJECT_O_TOKEN`` or ``VAULT/token``; both can be overridden.
The token only ever travels in the ``Authorization`` header: the
``/v1/stream`` WebSocket is opened with a one-time ticket (``POST
/v1/tickets``) in its URL, as a browser has to, never with the token.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
from websockets.exceptions import WebSocketException
from websockets.sync.client import connect

from project_o.errors import ProjectOError
from project_o.supervisor.config import STATE_FILE

__all__ = ["Client", "SupervisorUnreachable"]

#: the query parameter a ticket travels in (the gateway's TICKET_PARAMETER; not
#: imported, so `project-o ask` does not load FastAPI)
TICKET_PARAMETER = "ticket"

#: the evolution endpoints (docs/design.md, "HTTP")
EXPERIMENTS = "/v1/evolution/experiments"


class SupervisorUnreachable(ProjectOError):
    """No running supervisor could be found or reached for this vault."""


class Client:
    """Talks to the gateway of the supervisor that owns ``vault``."""

    def __init__(self, vault: Path, *, url: str | None = None, token: str | None = None,
                 timeout: float = 60.0) -> None:
        self.url = url or _url_from_state(vault)
        self.token = token or os.environ.get("PROJECT_O_TOKEN") or _read_token(vault)
        self._timeout = timeout
        self._http = httpx.Client(base_url=self.url, timeout=timeout,
                                  headers={"Authorization": f"Bearer {self.token}"})

    def ask(self, payload: Any, *, deadline_ms: int | None = None) -> dict[str, Any]:
        """POST /v1/requests and return the JSON answer (raises on HTTP errors)."""
        body: dict[str, Any] = {"input": payload}
        if deadline_ms is not None:
            body["deadline_ms"] = deadline_ms
        return self._call("POST", "/v1/requests", json=body)

    def stream(
        self, payload: Any, *, on_event: Callable[[Any], None] | None = None,
        deadline_ms: int | None = None,
    ) -> dict[str, Any]:
        """Send one input over the ``/v1/stream`` WebSocket; return the final message.

        ``on_event`` gets each ``ctx.emit`` event as it arrives. The result
        is the ``output`` message (``request_id``, ``output``, ``version``,
        ``latency_ms``); an ``error`` message raises :class:`ProjectOError`.
        """
        body: dict[str, Any] = {"input": payload}
        if deadline_ms is not None:
            body["deadline_ms"] = deadline_ms
        try:
            with connect(self.stream_url(), proxy=None, open_timeout=self._timeout) as socket:
                socket.send(json.dumps(body))
                for raw in socket:
                    message = json.loads(raw)
                    kind = message.get("type")
                    if kind == "event" and on_event is not None:
                        on_event(message.get("data"))
                    elif kind == "output":
                        return dict(message)
                    elif kind == "error":
                        raise ProjectOError(f"/v1/stream -> {message.get('status')}: "
                                            f"{json.dumps(message.get('error'))}")
        except (OSError, WebSocketException) as exc:
            raise SupervisorUnreachable(f"the /v1/stream socket at {self.url} failed: {exc}; "
                                        "is `project-o run` running?") from exc
        raise ProjectOError("/v1/stream closed before the answer came")

    def stream_url(self) -> str:
        """A ``ws://`` URL for ``/v1/stream`` with a fresh one-time ticket (good 30 s, once)."""
        ticket = self._call("POST", "/v1/tickets")
        query = urlencode({TICKET_PARAMETER: ticket["ticket"]})
        return f"{self.url.replace('http', 'ws', 1)}{ticket['path']}?{query}"

    def status(self) -> dict[str, Any]:
        """GET /v1/status."""
        return self._call("GET", "/v1/status")

    def start_experiment(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST /v1/evolution/experiments: start a shadow or canary experiment."""
        return self._call("POST", EXPERIMENTS, json=body)

    def experiment(self, experiment_id: str) -> dict[str, Any]:
        """GET /v1/evolution/experiments/{id}: stage, samples, statistics, timeline."""
        return self._call("GET", f"{EXPERIMENTS}/{experiment_id}")

    def experiments(self) -> list[dict[str, Any]]:
        """GET /v1/evolution/experiments: every experiment, newest first."""
        listed: list[dict[str, Any]] = self._call("GET", EXPERIMENTS)["experiments"]
        return listed

    def approve(self, experiment_id: str) -> dict[str, Any]:
        """POST /v1/evolution/experiments/{id}/approve: start a proposed experiment."""
        return self._call("POST", f"{EXPERIMENTS}/{experiment_id}/approve")

    def apply_overlay(self, overlay_id: str) -> dict[str, Any]:
        """POST /v1/quarantine/{id}/apply: apply a canary's quarantined writes."""
        return self._call("POST", f"/v1/quarantine/{overlay_id}/apply")

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise SupervisorUnreachable(
                f"cannot reach the supervisor at {self.url}: {exc}; is `project-o run` running?"
            ) from exc
        if response.status_code >= 400:
            raise ProjectOError(f"{method} {path} -> {response.status_code}: {response.text}")
        result: dict[str, Any] = response.json()
        return result

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()


def _url_from_state(vault: Path) -> str:
    path = vault / STATE_FILE
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SupervisorUnreachable(
            f"no running supervisor found for vault {vault} ({path} unreadable: {exc}); "
            "start one with `project-o run`"
        ) from exc
    return f"http://{state['host']}:{state['port']}"


def _read_token(vault: Path) -> str:
    try:
        return (vault / "token").read_text().strip()
    except OSError as exc:
        raise SupervisorUnreachable(
            f"no API token: set PROJECT_O_TOKEN or start the supervisor once ({exc})"
        ) from exc
