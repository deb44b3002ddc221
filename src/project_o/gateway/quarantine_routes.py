"""``/v1/quarantine``: the canary writes kept apart from the agent's memory.

::

    GET  /v1/quarantine             every overlay: id, version, experiment, status, writes
    GET  /v1/quarantine/{id}        one overlay and its first writes          404 unknown
    POST /v1/quarantine/{id}/apply  append them to the agent's memory         409 not
                                                                               quarantined

Why a canary's writes wait in an overlay is in :mod:`project_o.vault.quarantine`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from project_o.gateway.auth import BearerAuth
from project_o.gateway.problems import service_method
from project_o.supervisor.api import AgentService

__all__ = ["quarantine_routes"]


def quarantine_routes(service: AgentService, auth: BearerAuth,
                      responses: dict[int | str, dict[str, Any]]) -> APIRouter:
    """The routes above, behind ``auth``; ``responses`` documents the shared errors."""
    router = APIRouter(prefix="/v1/quarantine", dependencies=[Depends(auth)],
                       responses=responses, tags=["quarantine"])

    def call(name: str) -> Any:
        return service_method(service, name, "this service keeps no canary overlays")

    @router.get("", response_model=dict[str, Any], operation_id="list_overlays")
    async def list_overlays() -> dict[str, Any]:
        """Every overlay of canary writes, oldest first, with its status and reason."""
        result: dict[str, Any] = await call("overlays")()
        return result

    @router.get("/{overlay_id}", response_model=dict[str, Any], operation_id="get_overlay",
                responses={404: responses[404]})
    async def get_overlay(overlay_id: str) -> dict[str, Any]:
        """One overlay: its manifest and its writes (each with the requests that made it)."""
        result: dict[str, Any] = await call("overlay")(overlay_id)
        return result

    @router.post("/{overlay_id}/apply", response_model=dict[str, Any],
                 operation_id="apply_overlay", responses={404: responses[404],
                                                          409: responses[409]})
    async def apply_overlay(overlay_id: str) -> dict[str, Any]:
        """Append a quarantined overlay's writes to the agent's memory (the main reloads)."""
        result: dict[str, Any] = await call("apply_overlay")(overlay_id)
        return result

    return router
