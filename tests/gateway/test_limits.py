"""The body-size limit, over real sockets: declared, chunked, and 100-continue."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import pytest

from project_o.gateway import DEFAULT_MAX_BODY_BYTES, GatewayServer, create_app
from project_o.gateway.limits import DRAIN_BYTES

from .conftest import CLIENT_TIMEOUT_S, TOKEN, ScriptedService

pytestmark = pytest.mark.anyio

LIMIT = 64 * 1024  # small, so the tests move little data
CHUNK = 16 * 1024
AUTH = {"Authorization": f"Bearer {TOKEN}", "content-type": "application/json"}


def body_of_size(size: int) -> bytes:
    """A valid request body of exactly ``size`` bytes."""
    frame = b'{"input": ""}'
    assert size >= len(frame)
    return b'{"input": "' + b"a" * (size - len(frame)) + b'"}'


async def chunks(body: bytes) -> AsyncIterator[bytes]:
    """Stream ``body`` so httpx sends it chunked, with no Content-Length."""
    for start in range(0, len(body), CHUNK):
        yield body[start : start + CHUNK]


@pytest.fixture(scope="module")
async def small_gateway() -> AsyncIterator[GatewayServer]:
    app = create_app(ScriptedService(), token=TOKEN, max_body_bytes=LIMIT)
    async with GatewayServer(app, port=0) as server:
        yield server


@pytest.fixture
async def client(small_gateway: GatewayServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=small_gateway.url, headers=AUTH, timeout=CLIENT_TIMEOUT_S
    ) as http:
        yield http


def assert_too_large(response: httpx.Response, limit: int = LIMIT) -> None:
    assert response.status_code == 413
    error = response.json()["error"]
    assert error["type"] == "PayloadTooLarge"
    assert error["limit_bytes"] == limit
    assert str(limit) in error["message"]


async def test_body_at_the_limit_is_accepted(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/requests", content=body_of_size(LIMIT))
    assert response.status_code == 200
    assert len(response.json()["output"]) == LIMIT - len(b'{"input": ""}')


async def test_chunked_body_at_the_limit_is_accepted(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/requests", content=chunks(body_of_size(LIMIT)))
    assert response.status_code == 200


@pytest.mark.parametrize("size", [LIMIT + 1, 3 * LIMIT, LIMIT + DRAIN_BYTES])
async def test_declared_body_over_the_limit_is_413(client: httpx.AsyncClient, size: int) -> None:
    response = await client.post("/v1/requests", content=body_of_size(size))
    assert_too_large(response)
    assert "Content-Length" in response.json()["error"]["message"]


@pytest.mark.parametrize("size", [LIMIT + 1, 3 * LIMIT])
async def test_chunked_body_over_the_limit_is_413(client: httpx.AsyncClient, size: int) -> None:
    response = await client.post("/v1/requests", content=chunks(body_of_size(size)))
    assert_too_large(response)
    assert "arrived" in response.json()["error"]["message"]


async def test_limit_applies_before_auth(small_gateway: GatewayServer) -> None:
    async with httpx.AsyncClient(base_url=small_gateway.url, timeout=CLIENT_TIMEOUT_S) as http:
        response = await http.post("/v1/requests", content=body_of_size(LIMIT + 1))
    assert_too_large(response)


async def test_default_limit_is_one_mebibyte(client: httpx.AsyncClient) -> None:
    assert DEFAULT_MAX_BODY_BYTES == 1 << 20
    app = create_app(ScriptedService(), token=TOKEN)
    async with (
        GatewayServer(app, port=0) as server,
        httpx.AsyncClient(base_url=server.url, headers=AUTH, timeout=CLIENT_TIMEOUT_S) as http,
    ):
        accepted = await http.post("/v1/requests", content=body_of_size(DEFAULT_MAX_BODY_BYTES))
        refused = await http.post("/v1/requests", content=chunks(body_of_size(1 << 20 | 1)))
    assert accepted.status_code == 200
    assert_too_large(refused, limit=DEFAULT_MAX_BODY_BYTES)


async def test_expect_continue_client_is_refused_before_sending_its_body(
    small_gateway: GatewayServer,
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", small_gateway.port)
    try:
        writer.write(
            b"POST /v1/requests HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nExpect: 100-continue\r\n"
            + f"Content-Length: {100 * LIMIT}\r\n\r\n".encode()
        )
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), CLIENT_TIMEOUT_S)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        assert status_line.startswith("HTTP/1.1 413")  # not "100 Continue"
        headers = dict(line.lower().split(": ", 1) for line in header_lines if line)
        assert headers["connection"] == "close"
        body = await reader.readexactly(int(headers["content-length"]))
        assert json.loads(body)["error"]["type"] == "PayloadTooLarge"
    finally:
        writer.close()


async def test_client_vanishing_mid_body_does_not_hurt_the_server(
    small_gateway: GatewayServer, client: httpx.AsyncClient
) -> None:
    for _ in range(3):
        _, writer = await asyncio.open_connection("127.0.0.1", small_gateway.port)
        writer.write(
            b"POST /v1/requests HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"10\r\n" + b'{"input": "aaaaa'[:16] + b"\r\n"
        )
        await writer.drain()
        writer.close()
        await writer.wait_closed()
    response = await client.post("/v1/requests", json={"input": "still here"})
    assert response.status_code == 200
    assert response.json()["output"] == "still here"
