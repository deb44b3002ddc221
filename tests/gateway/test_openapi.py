"""/openapi.json describes what the gateway does."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.anyio


@pytest.fixture
async def spec(anonymous: httpx.AsyncClient) -> dict[str, Any]:
    response = await anonymous.get("/openapi.json")  # open, like /healthz
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


def resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref is None:
        return schema
    resolved: dict[str, Any] = spec["components"]["schemas"][ref.rsplit("/", 1)[-1]]
    return resolved


async def test_lists_the_endpoints(spec: dict[str, Any]) -> None:
    assert set(spec["paths"]) == {
        "/healthz",
        "/metrics",
        "/v1/requests",
        "/v1/status",
        "/v1/feedback",
        "/v1/versions",
        "/v1/tickets",
        "/v1/evolution/experiments",
        "/v1/evolution/experiments/{experiment_id}",
        "/v1/evolution/experiments/{experiment_id}/approve",
        "/v1/quarantine",
        "/v1/quarantine/{overlay_id}",
        "/v1/quarantine/{overlay_id}/apply",
        "/v1/chat/completions",
        "/v1/models",
    }
    assert set(spec["paths"]["/v1/chat/completions"]) == {"post"}
    assert set(spec["paths"]["/v1/requests"]) == {"post"}
    assert set(spec["paths"]["/v1/status"]) == {"get"}
    assert set(spec["paths"]["/healthz"]) == {"get"}
    assert set(spec["paths"]["/v1/tickets"]) == {"post"}
    assert spec["paths"]["/v1/tickets"]["post"]["security"]


async def test_v1_needs_bearer_and_healthz_does_not(spec: dict[str, Any]) -> None:
    schemes = spec["components"]["securitySchemes"]
    assert [s["scheme"] for s in schemes.values()] == ["bearer"]
    assert spec["paths"]["/v1/requests"]["post"]["security"]
    assert spec["paths"]["/v1/status"]["get"]["security"]
    assert "security" not in spec["paths"]["/healthz"]["get"]


async def test_request_body_schema_matches_validation(spec: dict[str, Any]) -> None:
    body = spec["paths"]["/v1/requests"]["post"]["requestBody"]
    assert body["required"] is True
    schema = resolve(spec, body["content"]["application/json"]["schema"])
    assert schema["required"] == ["input"]
    assert schema["additionalProperties"] is False
    deadline = next(s for s in schema["properties"]["deadline_ms"]["anyOf"] if s["type"] != "null")
    assert deadline["type"] == "number"  # 2, 2.0 and 2.5 ms are all accepted
    assert deadline["exclusiveMinimum"] == 0
    assert schema["properties"]["input"]["$ref"] == "#/components/schemas/JSONValue"
    integers = next(s for s in spec["components"]["schemas"]["JSONValue"]["anyOf"]
                    if s["type"] == "integer")
    assert (integers["minimum"], integers["maximum"]) == (-(2**63), 2**64 - 1)


async def test_every_reference_in_the_document_resolves(spec: dict[str, Any]) -> None:
    refs = re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', json.dumps(spec))
    assert refs and set(refs) <= set(spec["components"]["schemas"])


async def test_reply_and_every_error_are_documented(spec: dict[str, Any]) -> None:
    responses = spec["paths"]["/v1/requests"]["post"]["responses"]
    assert set(responses) == {"200", "400", "401", "413", "415", "422", "500", "502", "503", "504"}
    reply = resolve(spec, responses["200"]["content"]["application/json"]["schema"])
    assert set(reply["required"]) == {"request_id", "output", "version", "latency_ms"}
    for status in set(responses) - {"200"}:
        error = resolve(spec, responses[status]["content"]["application/json"]["schema"])
        assert error["required"] == ["error"], status
    assert "Retry-After" in responses["503"]["headers"]
    assert {"200", "401"} <= set(spec["paths"]["/v1/status"]["get"]["responses"])
