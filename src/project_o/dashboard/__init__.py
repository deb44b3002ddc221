"""The dashboard: a live view of an agent and a reader of evolution runs, in the browser.

Served by the gateway under ``/ui/`` (:func:`mount_dashboard`); logged in
with a one-time ticket that ``project-o dashboard`` prints
(:mod:`project_o.dashboard.session`); pushed live over one WebSocket
(:mod:`project_o.dashboard.live`); and written as one self-contained
HTML file by ``project-o report`` (:mod:`project_o.dashboard.report`).
Every asset is in ``static/``; the vendored libraries carry their licenses.
"""

from __future__ import annotations

import asyncio
import contextlib

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from project_o.dashboard.live import LiveHub
from project_o.dashboard.routes import STATIC_DIR, UI_PREFIX, dashboard_router
from project_o.dashboard.session import SessionSigner
from project_o.gateway.auth import BearerAuth
from project_o.gateway.tickets import TicketBook
from project_o.supervisor.api import AgentService

__all__ = ["UI_PREFIX", "LiveHub", "mount_dashboard"]


def mount_dashboard(app: FastAPI, service: AgentService, token: str) -> LiveHub:
    """Serve the dashboard for ``service`` under ``/ui/`` of ``app``; returns its live hub."""
    hub = LiveHub(service)
    # The gateway's own book (create_app made it), so a ticket is one kind of
    # thing wherever it is redeemed: shown at the wrong door, it is spent for all.
    tickets: TicketBook = app.state.tickets
    router = dashboard_router(service, BearerAuth(token), hub, SessionSigner(token), tickets)
    app.include_router(router)
    app.mount(f"{UI_PREFIX}/static", StaticFiles(directory=STATIC_DIR), name="ui-static")
    app.state.dashboard = hub
    with contextlib.suppress(RuntimeError):  # no running loop: no recorder (tests, tools)
        hub.recorder = asyncio.get_running_loop().create_task(hub.record(),
                                                              name="dashboard recorder")
    return hub
