"""A real gateway on 127.0.0.1 (port 0) in the test's event loop, and a scripted service.

The service echoes its input, or does what the input asks:
``{"raise": NAME}`` raises one of the errors in :data:`SERVICE_ERRORS`
(or ``"bug"``: a plain RuntimeError), ``{"return": "bytes"}`` answers with
output that cannot be JSON, ``{"emit": [e1, e2, ...]}`` passes each event
to ``on_event`` first (:data:`NOT_JSON_EVENT` stands for bytes, which
cannot be JSON). Feedback on :data:`UNKNOWN_REQUEST` raises UnknownRequest;
other feedback is recorded in ``feedback_calls``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import msgpack
import pytest

from project_o.errors import (
    NoInstanceAvailable,
    PoisonRequest,
    RequestFailed,
    RequestTimeout,
    ServiceError,
    UnknownRequest,
)
from project_o.gateway import GatewayServer, RequestResult, create_app
from project_o.supervisor.api import EventSink, FeedbackReceipt, MetricsText
from project_o.wire import Packed

TOKEN = "test-token-0123456789abcdefghijklmnopqrstuvwxyz"
SECRET = "SECRET-TRACEBACK-MARKER"
UNKNOWN_REQUEST = "no-such-request"
NOT_JSON_EVENT = "<bytes>"
METRICS_BODY = b"# TYPE scripted_requests_total counter\nscripted_requests_total 3.0\n"
# Client-side guard so a hung server fails the test instead of stalling the suite.
CLIENT_TIMEOUT_S = 30.0

SERVICE_ERRORS: dict[str, Callable[[], ServiceError]] = {
    "poison": lambda: PoisonRequest(
        "request req-9 was quarantined: it killed 2 instances in a row (last: SIGSEGV)",
        request_id="req-9",
    ),
    "failed": lambda: RequestFailed(
        "KeyError", "'missing'", request_id="req-8", traceback=f"Traceback ...\n{SECRET}"
    ),
    "unavailable": lambda: NoInstanceAvailable("the agent is restarting", retry_after_s=2.5),
    "timeout": lambda: RequestTimeout("request req-7 missed its deadline", request_id="req-7"),
}


class ScriptedService:
    """An in-test AgentService: echoes, or raises on request."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, float | None]] = []
        self.feedback_calls: list[tuple[str, float, str]] = []
        self.snapshot: dict[str, Any] = {
            "supervisor_pid": 4242,
            "heart_pid": 4241,
            "instances": [{"id": "main-1", "role": "main", "pid": 5000}],
            "vault": {"last_sequence": 17},
            "events": [{"kind": "start"}],
        }

    async def submit(
        self,
        input: Any,
        *,
        deadline_s: float | None = None,
        request_id: str | None = None,
        on_event: EventSink | None = None,
    ) -> RequestResult:
        if isinstance(input, Packed):  # what the gateway sends: checked and packed once
            assert msgpack.unpackb(input.data, raw=False) == input.value
            input = input.value
        self.calls.append((input, deadline_s))
        if isinstance(input, dict) and on_event is not None:
            for event in input.get("emit", []):
                on_event(b"\xff" if event == NOT_JSON_EVENT else event)
        if isinstance(input, dict) and "raise" in input:
            if input["raise"] == "bug":
                raise RuntimeError(SECRET)
            raise SERVICE_ERRORS[input["raise"]]()
        if isinstance(input, dict) and input.get("return") == "bytes":
            return RequestResult(f"req-{len(self.calls)}", b"\xff\xfe", "v-test", 0.5)
        return RequestResult(request_id or f"req-{len(self.calls)}", input, "v-test", 0.25)

    async def feedback(self, request_id: str, score: float, comment: str) -> FeedbackReceipt:
        if request_id == UNKNOWN_REQUEST:
            raise UnknownRequest(f"no recent request has the id {request_id!r}")
        self.feedback_calls.append((request_id, score, comment))
        return FeedbackReceipt(stored=True, delivered=True, version="v-test")

    async def versions(self) -> dict[str, Any]:
        return {
            "serving": "v-test",
            "versions": [
                {
                    "id": "v-test",
                    "status": "serving",
                    "reason": "",
                    "parents": [],
                    "operator": "user",
                    "created_at": 1.0,
                    "serving": True,
                },
            ],
        }

    def status(self) -> dict[str, Any]:
        return self.snapshot

    def metrics(self) -> MetricsText:
        return MetricsText(METRICS_BODY, "text/plain; version=0.0.4; charset=utf-8")


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"  # the supervisor's loop is asyncio


@pytest.fixture(scope="module")
def service() -> ScriptedService:
    return ScriptedService()


@pytest.fixture(scope="module")
async def gateway(service: ScriptedService) -> AsyncIterator[GatewayServer]:
    app = create_app(service, token=TOKEN)
    async with GatewayServer(app, port=0) as server:
        yield server


@pytest.fixture
async def client(gateway: GatewayServer) -> AsyncIterator[httpx.AsyncClient]:
    """A client that sends the right token."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(
        base_url=gateway.url, headers=headers, timeout=CLIENT_TIMEOUT_S
    ) as http:
        yield http


@pytest.fixture
async def anonymous(gateway: GatewayServer) -> AsyncIterator[httpx.AsyncClient]:
    """A client that sends no token."""
    async with httpx.AsyncClient(base_url=gateway.url, timeout=CLIENT_TIMEOUT_S) as http:
        yield http
