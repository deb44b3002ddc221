"""GET /v1/versions over real HTTP against the scripted service, and its OpenAPI entry."""

from __future__ import annotations

import httpx
import pytest

pytestmark = pytest.mark.anyio


async def test_versions_lists_the_catalog_and_the_serving_one(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/versions")
    assert response.status_code == 200
    body = response.json()
    assert body["serving"] == "v-test"
    (version,) = body["versions"]
    assert version == {
        "id": "v-test",
        "status": "serving",
        "reason": "",
        "parents": [],
        "operator": "user",
        "created_at": 1.0,
        "serving": True,
    }


async def test_versions_needs_the_token(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.get("/v1/versions")
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "Unauthorized"


async def test_versions_is_read_only(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/versions", json={"id": "v-new"})
    assert response.status_code == 405
    assert response.json()["error"]["type"] == "MethodNotAllowed"


async def test_openapi_documents_versions(anonymous: httpx.AsyncClient) -> None:
    spec = (await anonymous.get("/openapi.json")).json()
    operation = spec["paths"]["/v1/versions"]["get"]
    assert operation["security"]
    ref = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    reply = spec["components"]["schemas"][ref.rsplit("/", 1)[-1]]
    assert set(reply["required"]) == {"serving", "versions"}
    item_ref = reply["properties"]["versions"]["items"]["$ref"]
    item = spec["components"]["schemas"][item_ref.rsplit("/", 1)[-1]]
    assert set(item["required"]) == {
        "id",
        "status",
        "reason",
        "parents",
        "operator",
        "created_at",
        "serving",
    }


async def test_openapi_describes_the_stream_socket(anonymous: httpx.AsyncClient) -> None:
    spec = (await anonymous.get("/openapi.json")).json()
    description = spec["info"]["description"]
    assert "/v1/stream" in description
    assert "?ticket=" in description  # how a browser authenticates
    assert "?token=" not in description  # the token never goes in a URL
    for message_type in ("accepted", "event", "output", "error", "1009"):
        assert message_type in description
