"""GatewayServer as a guest in the running loop: port 0, ready, shutdown, failures."""

from __future__ import annotations

import asyncio
import signal
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from project_o.errors import GatewayError
from project_o.gateway import DEFAULT_HOST, DEFAULT_PORT, GatewayServer, create_app, serve

from .conftest import CLIENT_TIMEOUT_S, TOKEN, ScriptedService

pytestmark = pytest.mark.anyio


def make_app() -> FastAPI:
    return create_app(ScriptedService(), token=TOKEN)


async def healthz(url: str) -> int:
    async with httpx.AsyncClient(base_url=url, timeout=CLIENT_TIMEOUT_S) as http:
        return (await http.get("/healthz")).status_code


def refuses_connections(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


def test_defaults_are_loopback_and_8700() -> None:
    assert (DEFAULT_HOST, DEFAULT_PORT) == ("127.0.0.1", 8700)
    server = GatewayServer(make_app())
    assert (server.host, server.port) == ("127.0.0.1", 8700)
    assert not server.started


async def test_port_zero_picks_a_free_port_and_reports_it() -> None:
    server = GatewayServer(make_app(), port=0)
    await server.start()
    try:
        assert server.started
        assert server.port > 0
        assert server.url == f"http://127.0.0.1:{server.port}"
        assert await healthz(server.url) == 200
    finally:
        await server.aclose()
    assert refuses_connections(server.port)


async def test_ended_resolves_once_serving_ends() -> None:
    server = GatewayServer(make_app(), port=0)
    with pytest.raises(GatewayError, match="not started"):
        server.ended()
    await server.start()
    ended = server.ended()
    assert await healthz(server.url) == 200
    assert not ended.done()  # serving
    await server.aclose()
    assert ended.done() and ended.result() is None


async def test_two_servers_in_one_loop_get_different_ports() -> None:
    async with (
        GatewayServer(make_app(), port=0) as first,
        GatewayServer(make_app(), port=0) as second,
    ):
        assert first.port != second.port
        assert await healthz(first.url) == await healthz(second.url) == 200


async def test_busy_port_raises_gateway_error_instead_of_exiting() -> None:
    async with GatewayServer(make_app(), port=0) as running:
        other = GatewayServer(make_app(), port=running.port)
        with pytest.raises(GatewayError, match=str(running.port)):
            await other.start()
        assert await healthz(running.url) == 200


async def test_serve_sets_ready_and_stops_cleanly_when_cancelled() -> None:
    ready = asyncio.Event()
    server = GatewayServer(make_app(), port=0)
    task = asyncio.create_task(server.serve(ready=ready))
    await asyncio.wait_for(ready.wait(), CLIENT_TIMEOUT_S)
    assert await healthz(server.url) == 200
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert refuses_connections(server.port)


async def test_module_level_serve_runs_until_cancelled() -> None:
    with socket.socket() as finder:  # a port that is free right now
        finder.bind(("127.0.0.1", 0))
        port = finder.getsockname()[1]
    ready = asyncio.Event()
    task = asyncio.create_task(serve(make_app(), port=port, ready=ready))
    await asyncio.wait_for(ready.wait(), CLIENT_TIMEOUT_S)
    assert await healthz(f"http://127.0.0.1:{port}") == 200
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert refuses_connections(port)


async def test_request_in_flight_finishes_during_shutdown() -> None:
    release = asyncio.Event()
    entered = asyncio.Event()

    class SlowService(ScriptedService):
        async def submit(self, input: Any, *, deadline_s: float | None = None) -> Any:
            entered.set()
            await release.wait()
            return await super().submit(input, deadline_s=deadline_s)

    server = GatewayServer(create_app(SlowService(), token=TOKEN), port=0)
    await server.start()
    async with httpx.AsyncClient(
        base_url=server.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=CLIENT_TIMEOUT_S
    ) as http:
        pending = asyncio.create_task(http.post("/v1/requests", json={"input": "late"}))
        await asyncio.wait_for(entered.wait(), CLIENT_TIMEOUT_S)
        closing = asyncio.create_task(server.aclose())
        async with asyncio.timeout(CLIENT_TIMEOUT_S):
            while not refuses_connections(server.port):  # shutdown has begun
                await asyncio.sleep(0.01)
        release.set()
        response = await pending
        await closing
    assert response.status_code == 200
    assert response.json()["output"] == "late"


async def test_host_signal_handlers_are_left_alone() -> None:
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    async with GatewayServer(make_app(), port=0):
        during = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    assert during == before


async def test_failed_app_startup_raises_gateway_error() -> None:
    @asynccontextmanager
    async def broken_lifespan(app: FastAPI) -> AsyncIterator[None]:
        raise RuntimeError("cannot start")
        yield  # pragma: no cover

    server = GatewayServer(FastAPI(lifespan=broken_lifespan), port=0)
    with pytest.raises(GatewayError, match="failed to start"):
        await server.start()
    assert refuses_connections(server.port)


async def test_a_server_starts_only_once() -> None:
    async with GatewayServer(make_app(), port=0) as server:
        with pytest.raises(GatewayError, match="already"):
            await server.start()


def test_app_refuses_a_service_without_the_protocol() -> None:
    from project_o.errors import InvalidArgument

    with pytest.raises(InvalidArgument, match="AgentService"):
        create_app(object(), token=TOKEN)  # type: ignore[arg-type]
