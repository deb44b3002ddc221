"""The HTTP gateway: the agent's API, served from inside the supervisor.

::

    HTTP client ──▶ GatewayServer (uvicorn, a task in the supervisor's loop)
                     └─ create_app(service, token=...)  FastAPI
                          ├─ BodyLimitMiddleware      413 while the body arrives
                          ├─ BearerAuth               401 without the token
                          └─ the routes ──▶ service.submit() / feedback() / versions() /
                                            status() / metrics()   (the supervisor)

The routes, their bodies and answers are tabled in docs/design.md ("HTTP").

The gateway imports no agent code and nothing heavy: FastAPI, uvicorn and
pydantic only. It knows the supervisor solely as an :class:`AgentService`
(:mod:`project_o.supervisor.api`, re-exported here).

Modules: ``models`` (JSON bodies), ``bodies``
(parsing and checking them), ``auth`` (token and check), ``limits`` (body
size), ``problems`` (error bodies), ``app`` (routes), ``stream`` (the
WebSocket), ``tickets`` (one-time tickets where only a URL can carry
credentials), ``server`` (running it).
"""

from __future__ import annotations

from project_o.gateway.app import create_app
from project_o.gateway.auth import TOKEN_ENV, TOKEN_FILENAME, resolve_token
from project_o.gateway.limits import DEFAULT_MAX_BODY_BYTES
from project_o.gateway.models import MAX_DEADLINE_MS
from project_o.gateway.server import DEFAULT_HOST, DEFAULT_PORT, GatewayServer, serve
from project_o.supervisor.api import AgentService, RequestResult

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_PORT",
    "MAX_DEADLINE_MS",
    "TOKEN_ENV",
    "TOKEN_FILENAME",
    "AgentService",
    "GatewayServer",
    "RequestResult",
    "create_app",
    "resolve_token",
    "serve",
]
