"""The ``/ui/`` routes: login, the page, its data, and the live socket.

::

    POST /ui/api/ticket         Bearer   a one-time login ticket (project-o dashboard)
    GET  /ui/login?ticket=T     open     ticket ─▶ session cookie ─▶ 303 /ui/
    GET  /ui/                   cookie   the single page
    GET  /ui/static/...         open     the page's own scripts, styles and vendored libraries
    GET  /ui/api/versions       cookie   ?offset=&limit= lineage page (no sources)
    GET  /ui/api/versions/{id}  cookie   sources and the diff against each parent
    GET  /ui/api/events         cookie   ?limit= older events, from the catalog
    GET  /ui/api/experiments/{id}  cookie  one experiment, as the API gives it
    POST /ui/api/experiments/{id}/approve  cookie + X-Project-O-UI header: start a proposed one
    GET  /ui/api/bandit         cookie   the operator bandit's state
    GET  /ui/api/runs/{id}      cookie   one evolution run, from its catalog
    GET  /ui/api/redteam        cookie   red vs blue: findings by round (adversarial runs)
    POST /ui/api/logout         cookie + X-Project-O-UI header
    WS   /ui/live               cookie + same Origin: snapshot, then ticks (project_o.dashboard.live)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, Field

from project_o.dashboard import catalog_view, runs_view
from project_o.dashboard.guard import SessionGuard
from project_o.dashboard.live import LiveHub, catalog_of
from project_o.dashboard.recorder import load_points
from project_o.dashboard.redteam_view import red_team
from project_o.dashboard.session import COOKIE_NAME, LOGIN_PATH, TICKET_TTL_S, SessionSigner
from project_o.errors import InvalidArgument
from project_o.evolution.bandit import OperatorBandit
from project_o.gateway.auth import BearerAuth
from project_o.gateway.problems import APIError
from project_o.gateway.tickets import TICKET_PARAMETER, TicketBook
from project_o.supervisor.api import AgentService

__all__ = ["PAGE_HEADERS", "STATIC_DIR", "TicketRequest", "dashboard_router"]

STATIC_DIR: Final = Path(__file__).parent / "static"
#: where the evolution control keeps the operator bandit, beside the catalog
BANDIT_FILE: Final = "operators.json"
UI_PREFIX: Final = "/ui"
#: the page loads nothing from anywhere else, and no other site may frame it
PAGE_HEADERS: Final = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                               "style-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
                               "form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class TicketRequest(BaseModel):
    """The body of ``POST /ui/api/ticket`` (optional)."""

    run_dirs: list[str] = Field(default_factory=list,
                                description="evolution run directories to watch")


def dashboard_router(service: AgentService, auth: BearerAuth, hub: LiveHub,
                     signer: SessionSigner, tickets: TicketBook) -> APIRouter:
    """Every ``/ui/`` route of one gateway."""
    guard = SessionGuard(signer)
    router = APIRouter(prefix=UI_PREFIX, include_in_schema=False)
    _login_routes(router, auth, hub, signer, tickets, guard)
    _data_routes(router, service, hub, guard)
    _live_route(router, hub, guard)
    return router


def _login_routes(router: APIRouter, auth: BearerAuth, hub: LiveHub, signer: SessionSigner,
                  tickets: TicketBook, guard: SessionGuard) -> None:
    @router.post("/api/ticket", dependencies=[Depends(auth)])
    async def ticket(body: TicketRequest | None = None) -> dict[str, Any]:
        for name in (body.run_dirs if body else []):
            run_dir = Path(name)
            if not (run_dir / runs_view.CATALOG_FILE).is_file():
                raise APIError(422, "InvalidRequest", f"{name} holds no evolution run "
                               f"({runs_view.CATALOG_FILE} is missing)")
            if run_dir not in hub.run_dirs:
                hub.run_dirs.append(run_dir)
        issued = tickets.issue(LOGIN_PATH, TICKET_TTL_S)
        return {"ticket": issued, "path": f"{LOGIN_PATH}?{TICKET_PARAMETER}={issued}"}

    @router.get("/login")
    async def login(ticket: str = "") -> Response:
        if not tickets.redeem(ticket, LOGIN_PATH):
            return _refusal(401, "This login link was already used or has expired (links "
                            "last 60 seconds). Run <code>project-o dashboard</code> again.")
        response = RedirectResponse(f"{UI_PREFIX}/", status_code=303)
        response.set_cookie(COOKIE_NAME, signer.issue(), max_age=int(signer.ttl_s),
                            path=UI_PREFIX, httponly=True, samesite="strict")
        return response

    @router.get("/")
    async def page(request: Request) -> Response:
        try:
            guard.check(request)
        except APIError as refused:
            return _refusal(refused.status_code, "Not logged in. Run <code>project-o "
                            "dashboard</code> and open the link it prints.")
        return FileResponse(STATIC_DIR / "index.html", headers=PAGE_HEADERS)

    @router.post("/api/logout", dependencies=[Depends(guard)])
    async def logout() -> Response:
        response = Response(status_code=204)
        response.delete_cookie(COOKIE_NAME, path=UI_PREFIX, httponly=True, samesite="strict")
        return response


def _data_routes(router: APIRouter, service: AgentService, hub: LiveHub,
                 guard: SessionGuard) -> None:
    def catalog() -> Path:
        path = catalog_of(service.status())
        if path is None or not path.is_file():
            raise APIError(404, "NoCatalog", "this supervisor has no catalog to read")
        return path

    @router.get("/api/versions", dependencies=[Depends(guard)])
    async def versions(offset: Annotated[int, Query(ge=0)] = 0,
                       limit: Annotated[int, Query(ge=1, le=catalog_view.MAX_PAGE)] = 500,
                       ) -> dict[str, Any]:
        page = await asyncio.to_thread(catalog_view.versions_page, catalog(), offset, limit)
        return {**page, "serving": service.status().get("version")}

    @router.get("/api/versions/{version_id}", dependencies=[Depends(guard)])
    async def version(version_id: str) -> dict[str, Any]:
        found = await asyncio.to_thread(catalog_view.version_detail, catalog(), version_id)
        if found is None:
            raise APIError(404, "UnknownVersion", f"no version has the id {version_id!r}")
        return found

    @router.get("/api/events", dependencies=[Depends(guard)])
    async def events(limit: Annotated[int, Query(ge=1, le=10_000)] = 1000) -> dict[str, Any]:
        return {"events": await asyncio.to_thread(catalog_view.events, catalog(), limit)}

    async def ask_evolution(name: str, experiment_id: str) -> dict[str, Any]:
        method = getattr(service, name, None)  # a service may run no experiments at all
        if method is None:
            raise APIError(404, "UnknownExperiment", "this service runs no experiments")
        result: dict[str, Any] = await method(experiment_id)
        return result

    @router.get("/api/experiments/{experiment_id}", dependencies=[Depends(guard)])
    async def experiment(experiment_id: str) -> dict[str, Any]:
        found = await ask_evolution("experiment", experiment_id)
        points = list(hub.experiment_points.get(experiment_id, []))
        if not points:  # sampled before this supervisor started, or by another one
            points = await asyncio.to_thread(load_points, catalog().parent, experiment_id)
        return {**found, "points": points}

    @router.post("/api/experiments/{experiment_id}/approve", dependencies=[Depends(guard)])
    async def approve(experiment_id: str) -> dict[str, Any]:
        return await ask_evolution("approve_experiment", experiment_id)

    @router.get("/api/bandit", dependencies=[Depends(guard)])
    async def bandit() -> dict[str, Any]:
        return read_bandit(catalog().parent)

    @router.get("/api/redteam", dependencies=[Depends(guard)])
    async def redteam() -> dict[str, Any]:
        vaults = [catalog().parent, *hub.run_dirs, *(d / "VAULT" for d in hub.run_dirs)]
        return await asyncio.to_thread(red_team, vaults)

    @router.get("/api/runs/{run_id}", dependencies=[Depends(guard)])
    async def run(run_id: str) -> dict[str, Any]:
        for run_dir in hub.run_dirs:
            path = run_dir / runs_view.CATALOG_FILE
            found = await asyncio.to_thread(runs_view.run_detail, path, run_id)
            if found is not None:
                return {**found, "dir": str(run_dir)}
        raise APIError(404, "UnknownRun", f"no watched run directory holds run {run_id!r}")


def read_bandit(vault: Path) -> dict[str, Any]:
    """The operator bandit's arms: successes, failures and each posterior's mean."""
    try:
        bandit = OperatorBandit.load(json.loads((vault / BANDIT_FILE).read_text()))
    except (OSError, ValueError, InvalidArgument):
        return {"arms": []}  # no experiment has used the bandit yet
    return {"arms": [{"operator": name, **figures}
                     for name, figures in sorted(bandit.stats().items())]}


def _live_route(router: APIRouter, hub: LiveHub, guard: SessionGuard) -> None:
    @router.websocket("/live")
    async def live(websocket: WebSocket) -> None:
        if not guard.allows_socket(websocket):
            await websocket.close(code=1008)  # policy violation: no session or foreign page
            return
        await websocket.accept()
        closed = asyncio.ensure_future(_until_closed(websocket))
        try:
            async with contextlib.aclosing(hub.subscribe()) as messages:
                async for message in messages:
                    if closed.done():
                        break
                    await websocket.send_text(json.dumps(message, default=str))
        except (WebSocketDisconnect, RuntimeError):
            pass  # the page went away
        finally:
            closed.cancel()


async def _until_closed(websocket: WebSocket) -> None:
    # The page never sends; a receive returns only when it disconnects.
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return


def _refusal(status: int, message: str) -> HTMLResponse:
    body = ("<!doctype html><meta charset=utf-8><title>Project O</title>"
            f"<p style='font:16px system-ui;margin:3em'>{message}</p>")
    return HTMLResponse(body, status_code=status, headers=PAGE_HEADERS)
