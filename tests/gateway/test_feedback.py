"""POST /v1/feedback over real HTTP: what is accepted, and every refusal (which stores nothing)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from project_o.gateway.models import MAX_COMMENT_CHARS, MAX_REQUEST_ID_CHARS

from .conftest import UNKNOWN_REQUEST, ScriptedService

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("score", [-1, -0.25, 0, 1, 1.0])
async def test_feedback_is_accepted_with_202(
    client: httpx.AsyncClient, service: ScriptedService, score: float
) -> None:
    response = await client.post(
        "/v1/feedback", json={"request_id": "req-1", "score": score, "comment": "clear"}
    )
    assert response.status_code == 202
    assert response.json() == {
        "stored": True,
        "delivered": True,
        "version": "v-test",
        "reason": None,
    }
    assert service.feedback_calls[-1] == ("req-1", score, "clear")


async def test_the_comment_is_optional(client: httpx.AsyncClient, service: ScriptedService) -> None:
    response = await client.post("/v1/feedback", json={"request_id": "req-2", "score": 0.5})
    assert response.status_code == 202
    assert service.feedback_calls[-1] == ("req-2", 0.5, "")


async def test_an_unknown_request_id_is_a_404(
    client: httpx.AsyncClient, service: ScriptedService
) -> None:
    before = list(service.feedback_calls)
    response = await client.post("/v1/feedback", json={"request_id": UNKNOWN_REQUEST, "score": 1})
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["type"] == "UnknownRequest"
    assert UNKNOWN_REQUEST in error["message"]
    assert service.feedback_calls == before


INVALID_BODIES: list[tuple[Any, str]] = [
    ({"request_id": "r", "score": 1.5}, "score"),
    ({"request_id": "r", "score": -1.01}, "score"),
    ({"request_id": "r", "score": "0.5"}, "score"),
    ({"request_id": "r", "score": True}, "score"),
    ({"request_id": "r", "score": None}, "score"),
    ({"request_id": "r"}, "score"),
    ({"score": 1}, "request_id"),
    ({"request_id": "", "score": 1}, "request_id"),
    ({"request_id": 7, "score": 1}, "request_id"),
    ({"request_id": "r" * (MAX_REQUEST_ID_CHARS + 1), "score": 1}, "request_id"),
    ({"request_id": "r", "score": 1, "comment": 5}, "comment"),
    ({"request_id": "r", "score": 1, "comment": "c" * (MAX_COMMENT_CHARS + 1)}, "comment"),
    ({"request_id": "r", "score": 1, "rating": 5}, "rating"),
    ([1, 2], "(body)"),
]


@pytest.mark.parametrize(("body", "field"), INVALID_BODIES)
async def test_invalid_feedback_is_a_422_naming_the_field(
    client: httpx.AsyncClient, service: ScriptedService, body: Any, field: str
) -> None:
    before = list(service.feedback_calls)
    response = await client.post("/v1/feedback", json=body)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["type"] == "InvalidRequest"
    assert field in [f["field"] for f in error["fields"]]
    assert service.feedback_calls == before


@pytest.mark.parametrize(
    ("content", "headers", "status", "error_type"),
    [
        (b"", {"Content-Type": "application/json"}, 400, "InvalidJSON"),
        (
            b'{"request_id": "r", "score": NaN}',
            {"Content-Type": "application/json"},
            400,
            "InvalidJSON",
        ),
        (b"{not json", {"Content-Type": "application/json"}, 400, "InvalidJSON"),
        (
            b'{"request_id": "r", "score": 1}',
            {"Content-Type": "text/plain"},
            415,
            "UnsupportedMediaType",
        ),
    ],
)
async def test_bodies_that_are_not_json_are_refused(
    client: httpx.AsyncClient,
    service: ScriptedService,
    content: bytes,
    headers: dict[str, str],
    status: int,
    error_type: str,
) -> None:
    before = list(service.feedback_calls)
    response = await client.post("/v1/feedback", content=content, headers=headers)
    assert response.status_code == status
    assert response.json()["error"]["type"] == error_type
    assert service.feedback_calls == before


async def test_feedback_needs_the_token(
    anonymous: httpx.AsyncClient, service: ScriptedService
) -> None:
    before = list(service.feedback_calls)
    response = await anonymous.post("/v1/feedback", json={"request_id": "r", "score": 1})
    assert response.status_code == 401
    assert service.feedback_calls == before


async def test_other_methods_are_refused(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/feedback")
    assert response.status_code == 405
    assert response.json()["error"]["type"] == "MethodNotAllowed"


async def test_openapi_documents_feedback(anonymous: httpx.AsyncClient) -> None:
    spec = (await anonymous.get("/openapi.json")).json()
    operation = spec["paths"]["/v1/feedback"]["post"]
    assert operation["security"]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    assert schema["required"] == ["request_id", "score"]
    assert schema["additionalProperties"] is False
    assert (schema["properties"]["score"]["minimum"], schema["properties"]["score"]["maximum"]) == (
        -1,
        1,
    )
    assert {"202", "400", "401", "404", "415", "422"} <= set(operation["responses"])
