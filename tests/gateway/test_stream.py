"""WebSocket /v1/stream against a real gateway and the scripted service.

What a client sees: accepted, events, then output or error; several
requests on one socket; refusals that keep the socket open; the token
from a header, or a one-time ticket in the query (never the token); 1009
for a message over the limit.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from project_o.dashboard import mount_dashboard
from project_o.gateway import GatewayServer, create_app
from project_o.gateway.server import DEFAULT_WS_MAX_SIZE
from project_o.gateway.stream import STREAM_TICKET_TTL_S
from project_o.gateway.tickets import TicketBook

from .conftest import NOT_JSON_EVENT, SECRET, TOKEN, ScriptedService

pytestmark = pytest.mark.anyio

#: a client-side guard so a stuck server fails the test instead of hanging it
RECV_TIMEOUT_S = 30.0


def ws_url(server: GatewayServer, query: str = "") -> str:
    return f"ws://127.0.0.1:{server.port}/v1/stream{query}"


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def ws(gateway: GatewayServer) -> AsyncIterator[ClientConnection]:
    async with connect(ws_url(gateway), additional_headers=bearer(), proxy=None) as socket:
        yield socket


async def receive(socket: ClientConnection) -> dict[str, Any]:
    raw = await socket.recv(decode=True)
    assert isinstance(raw, str)
    message: dict[str, Any] = json.loads(raw)
    return message


async def exchange(socket: ClientConnection, request: Any) -> list[dict[str, Any]]:
    """Send one request; every message up to and including its output or error."""
    await socket.send(request if isinstance(request, str) else json.dumps(request))
    messages = [await receive(socket)]
    while messages[-1]["type"] in ("accepted", "event"):
        messages.append(await receive(socket))
    return messages


# -- answers ------------------------------------------------------------------


async def test_events_arrive_in_order_then_the_output(
    ws: ClientConnection, service: ScriptedService
) -> None:
    request = {"emit": [{"token": "Hel"}, {"token": "lo"}, "done"]}

    accepted, *events, output = await exchange(ws, {"input": request, "deadline_ms": 1500})

    assert accepted["type"] == "accepted"
    assert [e["type"] for e in events] == ["event"] * 3
    assert [e["data"] for e in events] == [{"token": "Hel"}, {"token": "lo"}, "done"]
    assert output == {
        "type": "output",
        "request_id": accepted["request_id"],
        "output": request,
        "version": "v-test",
        "latency_ms": 0.25,
    }
    assert service.calls[-1] == (request, 1.5)


async def test_one_socket_serves_requests_one_after_another(ws: ClientConnection) -> None:
    ids = []
    for n in range(3):
        accepted, output = await exchange(ws, {"input": n})
        assert output["output"] == n
        ids.append(accepted["request_id"])
    assert len(set(ids)) == 3


async def test_binary_messages_are_read_as_json(ws: ClientConnection) -> None:
    await ws.send(json.dumps({"input": "bin"}).encode())
    assert (await receive(ws))["type"] == "accepted"
    assert (await receive(ws))["output"] == "bin"


async def test_an_event_that_is_not_json_is_dropped_and_counted(ws: ClientConnection) -> None:
    _, event, output = await exchange(ws, {"input": {"emit": ["ok", NOT_JSON_EVENT]}})
    assert event["data"] == "ok"
    assert output["type"] == "output"
    assert output["dropped_events"] == 1


# -- refusals keep the socket open -----------------------------------------------


@pytest.mark.parametrize(
    ("message", "status", "error_type"),
    [
        ("not json", 400, "InvalidJSON"),
        ("", 400, "InvalidJSON"),
        ('{"input": NaN}', 400, "InvalidJSON"),
        ('{"deadline_ms": 5}', 422, "InvalidRequest"),
        ('{"input": 1, "deadline": 5}', 422, "InvalidRequest"),
        ('{"input": 1, "deadline_ms": "5"}', 422, "InvalidRequest"),
        ("[1, 2]", 422, "InvalidRequest"),
    ],
)
async def test_bad_messages_get_an_error_and_the_socket_stays_usable(
    ws: ClientConnection, service: ScriptedService, message: str, status: int, error_type: str
) -> None:
    before = len(service.calls)

    (error,) = await exchange(ws, message)

    assert error["type"] == "error" and error["status"] == status
    assert error["error"]["type"] == error_type
    assert error["error"]["message"]
    assert len(service.calls) == before  # nothing reached the agent
    assert (await exchange(ws, {"input": "still here"}))[-1]["output"] == "still here"


async def test_an_invalid_field_is_named(ws: ClientConnection) -> None:
    (error,) = await exchange(ws, {"input": 1, "extra": True})
    assert [f["field"] for f in error["error"]["fields"]] == ["extra"]


@pytest.mark.parametrize(
    ("name", "status", "error_type"),
    [
        ("poison", 502, "PoisonRequest"),
        ("failed", 502, "RequestFailed"),
        ("unavailable", 503, "NoInstanceAvailable"),
        ("timeout", 504, "RequestTimeout"),
    ],
)
async def test_service_errors_map_as_over_http(
    ws: ClientConnection, name: str, status: int, error_type: str
) -> None:
    accepted, error = await exchange(ws, {"input": {"raise": name}})
    assert accepted["type"] == "accepted"
    assert error["type"] == "error" and error["status"] == status
    assert error["error"]["type"] == error_type
    assert SECRET not in json.dumps(error)  # tracebacks stay in the server log
    assert (await exchange(ws, {"input": "next"}))[-1]["output"] == "next"


async def test_a_service_bug_is_an_internal_error_not_a_closed_socket(
    ws: ClientConnection,
) -> None:
    _, error = await exchange(ws, {"input": {"raise": "bug"}})
    assert (error["status"], error["error"]["type"]) == (500, "InternalError")
    assert SECRET not in json.dumps(error)
    assert (await exchange(ws, {"input": "next"}))[-1]["output"] == "next"


async def test_output_that_is_not_json_is_an_invalid_output_error(ws: ClientConnection) -> None:
    _, error = await exchange(ws, {"input": {"return": "bytes"}})
    assert (error["status"], error["error"]["type"]) == (502, "InvalidOutput")


# -- auth -------------------------------------------------------------------------


async def ticket(client: httpx.AsyncClient) -> str:
    reply = await client.post("/v1/tickets")
    assert reply.status_code == 200
    body = reply.json()
    assert body["path"] == "/v1/stream"
    assert body["expires_in_s"] == STREAM_TICKET_TTL_S
    return str(body["ticket"])


async def refused(url: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """The 401 error body a refused upgrade gets."""
    with pytest.raises(InvalidStatus) as denied:
        async with connect(url, additional_headers=headers or {}, proxy=None):
            pass
    response = denied.value.response
    assert response.status_code == 401
    assert "Bearer" in response.headers["WWW-Authenticate"]
    error: dict[str, Any] = json.loads(response.body)["error"]
    assert error["type"] == "Unauthorized"
    return error


async def test_a_ticket_opens_the_socket_once(
    gateway: GatewayServer, client: httpx.AsyncClient
) -> None:
    issued = await ticket(client)
    async with connect(ws_url(gateway, f"?ticket={issued}"), proxy=None) as socket:
        assert (await exchange(socket, {"input": "q"}))[-1]["output"] == "q"
    error = await refused(ws_url(gateway, f"?ticket={issued}"))
    assert "already used" in error["message"]


async def test_a_ticket_needs_the_token_to_be_issued(anonymous: httpx.AsyncClient) -> None:
    assert (await anonymous.post("/v1/tickets")).status_code == 401


async def test_a_ticket_expires() -> None:
    class Clock:
        now = 100.0

        def __call__(self) -> float:
            return self.now

    clock = Clock()
    app = create_app(ScriptedService(), token=TOKEN, tickets=TicketBook(clock=clock))
    async with (
        GatewayServer(app, port=0) as server,
        httpx.AsyncClient(base_url=server.url, headers=bearer()) as client,
    ):
        late, on_time = await ticket(client), await ticket(client)
        clock.now += STREAM_TICKET_TTL_S - 0.5
        async with connect(ws_url(server, f"?ticket={on_time}"), proxy=None) as socket:
            assert (await exchange(socket, {"input": "in time"}))[-1]["output"] == "in time"
        clock.now += 1.0
        assert "expired" in (await refused(ws_url(server, f"?ticket={late}")))["message"]


async def test_a_ticket_for_another_path_is_refused_and_spent() -> None:
    tickets = TicketBook()
    app = create_app(ScriptedService(), token=TOKEN, tickets=tickets)
    async with (
        GatewayServer(app, port=0) as server,
        httpx.AsyncClient(base_url=server.url, headers=bearer()) as client,
    ):
        # A dashboard login ticket is not a stream ticket ...
        login = tickets.issue("/ui/login", 60.0)
        await refused(ws_url(server, f"?ticket={login}"))
        assert not tickets.redeem(login, "/ui/login")  # ... and, shown at the wrong door, spent
        # ... nor does a stream ticket open anything else.
        stream = await ticket(client)
        assert not tickets.redeem(stream, "/ui/login")
        await refused(ws_url(server, f"?ticket={stream}"))


async def test_the_dashboard_redeems_from_the_same_book() -> None:
    app = create_app(ScriptedService(), token=TOKEN, mounts=[mount_dashboard])
    try:
        async with (
            GatewayServer(app, port=0) as server,
            httpx.AsyncClient(base_url=server.url, headers=bearer()) as client,
        ):
            login = (await client.post("/ui/api/ticket")).json()["ticket"]
            await refused(ws_url(server, f"?ticket={login}"))  # not a stream ticket ...
            # ... and spent there: the dashboard's own door no longer opens for it
            answer = await client.get(f"/ui/login?ticket={login}", follow_redirects=False)
            assert answer.status_code == 401
            fresh = (await client.post("/ui/api/ticket")).json()["ticket"]
            answer = await client.get(f"/ui/login?ticket={fresh}", follow_redirects=False)
            assert answer.status_code == 303
    finally:
        if app.state.dashboard.recorder is not None:
            app.state.dashboard.recorder.cancel()


async def test_the_token_is_refused_in_the_url(gateway: GatewayServer) -> None:
    error = await refused(ws_url(gateway, f"?token={TOKEN}"))
    assert "/v1/tickets" in error["message"]  # says what to do instead


@pytest.mark.parametrize(
    ("query", "headers"),
    [
        ("", {}),
        ("?token=wrong", {}),
        ("?ticket=made-up", {}),
        ("?ticket=", {}),
        ("", bearer("wrong-token")),
        ("", {"Authorization": f"Basic {TOKEN}"}),
    ],
)
async def test_without_the_right_credentials_the_upgrade_is_refused_with_401(
    gateway: GatewayServer, service: ScriptedService, query: str, headers: dict[str, str]
) -> None:
    before = len(service.calls)
    error = await refused(ws_url(gateway, query), headers)
    assert "token" in error["message"] or "ticket" in error["message"]
    assert len(service.calls) == before


# -- size limit -------------------------------------------------------------------

LIMIT = 1024


@pytest.mark.parametrize("ws_max_size", [DEFAULT_WS_MAX_SIZE, LIMIT], ids=["app", "server"])
async def test_a_message_over_the_limit_closes_with_1009(ws_max_size: int) -> None:
    service = ScriptedService()
    app = create_app(service, token=TOKEN, max_body_bytes=LIMIT)
    async with (
        GatewayServer(app, port=0, ws_max_size=ws_max_size) as server,
        connect(ws_url(server), additional_headers=bearer(), proxy=None) as socket,
    ):
        assert (await exchange(socket, {"input": "x" * (LIMIT - 100)}))[-1]["type"] == "output"
        await socket.send(json.dumps({"input": "x" * LIMIT}))
        with pytest.raises(ConnectionClosed):
            await receive(socket)
    assert socket.close_code == 1009
    assert len(service.calls) == 1
