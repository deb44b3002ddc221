"""POST /v1/requests answered by the fast path and by the FastAPI route: the same answers.

The fast path (gateway/fast_path.py) answers the route before FastAPI's
routing; the route stays for /openapi.json. Both run the same functions,
and this test holds them to it: one gateway as built, one with the fast
path taken out, the same requests to each, the same status, headers and
bodies back.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from project_o.gateway import GatewayServer, create_app
from project_o.gateway.fast_path import FastRequests

from .conftest import CLIENT_TIMEOUT_S, TOKEN, ScriptedService

pytestmark = pytest.mark.anyio

_BEARER = {"Authorization": f"Bearer {TOKEN}"}
_JSON = {**_BEARER, "Content-Type": "application/json"}
#: (headers, body) of each request, sent in this order to both gateways
CASES: list[tuple[dict[str, str], bytes]] = [
    ({}, b'{"input": 1}'),
    ({"Authorization": "Bearer wrong-token"}, b'{"input": 1}'),
    ({"Authorization": f"Basic {TOKEN}"}, b'{"input": 1}'),
    ({"Authorization": "Bearer"}, b'{"input": 1}'),
    ({"Content-Type": "text/plain"}, b"{not json"),  # auth is checked first
    ({**_BEARER, "Content-Type": "text/plain"}, b'{"input": 1}'),
    ({**_BEARER, "Content-Type": "application/problem+json"}, b'{"input": "plus"}'),
    (_BEARER, b'{"input": "no content type"}'),
    (_JSON, b""),
    (_JSON, b"{not json"),
    (_JSON, b'{"input": NaN}'),
    (_JSON, b'[1, 2]'),
    (_JSON, b'{"input": 1, "extra": 2}'),
    (_JSON, b'{"input": 1, "deadline_ms": -5}'),
    (_JSON, b'{"input": {"big": 12345678901234567890123}}'),
    (_JSON, b'{"input": {"q": "2+2?"}, "deadline_ms": 1500}'),
    (_JSON, b'{"input": {"raise": "poison"}}'),
    (_JSON, b'{"input": {"raise": "failed"}}'),
    (_JSON, b'{"input": {"raise": "unavailable"}}'),
    (_JSON, b'{"input": {"raise": "timeout"}}'),
    (_JSON, b'{"input": {"return": "bytes"}}'),
    (_JSON, b'{"input": {"raise": "bug"}}'),  # 500, the traceback only in the log
]
_COMPARED_HEADERS = ("content-type", "www-authenticate", "retry-after", "x-request-id")


@pytest.fixture(scope="module")
async def route_only() -> AsyncIterator[tuple[GatewayServer, ScriptedService]]:
    """A gateway whose POST /v1/requests goes through FastAPI's routing and dependencies."""
    service = ScriptedService()
    app = create_app(service, token=TOKEN, fast_path=False)
    async with GatewayServer(app, port=0) as server:
        yield server, service


async def _answers(url: str) -> list[tuple[int, dict[str, str], Any]]:
    answers = []
    async with httpx.AsyncClient(base_url=url, timeout=CLIENT_TIMEOUT_S) as http:
        for headers, body in CASES:
            response = await http.post("/v1/requests", content=body, headers=headers)
            kept = {name: response.headers[name] for name in _COMPARED_HEADERS
                    if name in response.headers}
            answers.append((response.status_code, kept, response.json()))
    return answers


async def test_fast_path_and_route_answer_alike(
    route_only: tuple[GatewayServer, ScriptedService],
) -> None:
    route_server, route_service = route_only
    fast_service = ScriptedService()
    async with GatewayServer(create_app(fast_service, token=TOKEN), port=0) as fast_server:
        fast = await _answers(fast_server.url)
    route = await _answers(route_server.url)
    for case, fast_answer, route_answer in zip(CASES, fast, route, strict=True):
        assert fast_answer == route_answer, case
    # every kind of answer was compared, and both services saw the same calls
    assert {status for status, _, _ in fast} >= {200, 400, 401, 415, 422, 500, 502, 503, 504}
    assert fast_service.calls == route_service.calls and len(fast_service.calls) == 9


async def test_the_fast_path_is_what_answers_the_route(monkeypatch: pytest.MonkeyPatch) -> None:
    served: list[int] = []
    answer = FastRequests._answer

    async def counted(self: FastRequests, *args: Any) -> Any:
        served.append(1)
        return await answer(self, *args)

    monkeypatch.setattr(FastRequests, "_answer", counted)
    app = create_app(ScriptedService(), token=TOKEN)
    async with GatewayServer(app, port=0) as server, httpx.AsyncClient(
            base_url=server.url, timeout=CLIENT_TIMEOUT_S) as http:
        response = await http.post("/v1/requests", json={"input": 1}, headers=_BEARER)
        other = await http.get("/v1/status", headers=_BEARER)
    assert response.status_code == 200 and other.status_code == 200
    assert served == [1]  # the route's request, not the status one
