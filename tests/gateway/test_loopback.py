"""The Host and Origin allow-list: a page on another site cannot use the gateway."""

from __future__ import annotations

import httpx
import pytest
import websockets

from project_o.gateway import GatewayServer

from .conftest import TOKEN, ScriptedService

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "LOCALHOST", "[::1]"])
async def test_loopback_names_pass_with_any_port(
    client: httpx.AsyncClient, service: ScriptedService, host: str
) -> None:
    response = await client.post("/v1/requests", json={"input": "hi"},
                                 headers={"Host": f"{host}:8700"})
    assert response.status_code == 200


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8700", "127.0.0.1.evil.example",
                                  "10.0.0.1", "[::1", ""])
async def test_another_host_name_is_403_before_anything_runs(
    client: httpx.AsyncClient, service: ScriptedService, host: str
) -> None:
    calls_before = len(service.calls)
    response = await client.post("/v1/requests", json={"input": "hi"}, headers={"Host": host})
    assert response.status_code == 403
    assert response.json()["error"]["type"] == "ForbiddenHost"
    assert len(service.calls) == calls_before


@pytest.mark.parametrize("origin", ["https://evil.example", "http://127.0.0.1.evil.example",
                                    "null", "file://", "chrome-extension://abc"])
async def test_a_cross_site_origin_is_403(
    client: httpx.AsyncClient, service: ScriptedService, origin: str
) -> None:
    calls_before = len(service.calls)
    response = await client.post("/v1/requests", json={"input": "hi"},
                                 headers={"Origin": origin})
    assert response.status_code == 403
    assert response.json()["error"]["type"] == "ForbiddenOrigin"
    assert len(service.calls) == calls_before


@pytest.mark.parametrize("origin", ["http://127.0.0.1:8700", "http://localhost:3000"])
async def test_a_loopback_origin_passes(client: httpx.AsyncClient, origin: str) -> None:
    response = await client.post("/v1/requests", json={"input": "hi"},
                                 headers={"Origin": origin})
    assert response.status_code == 200


async def test_the_open_routes_are_guarded_too(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.get("/healthz", headers={"Host": "evil.example"})
    assert response.status_code == 403


async def test_a_websocket_from_another_site_is_refused(gateway: GatewayServer) -> None:
    url = gateway.url.replace("http://", "ws://") + "/v1/stream"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with websockets.connect(url, additional_headers=headers,
                                      origin="https://evil.example"):  # type: ignore[arg-type]
            pass
    assert refused.value.response.status_code == 403
    async with websockets.connect(url, additional_headers=headers) as accepted:
        assert accepted.state.name == "OPEN"
