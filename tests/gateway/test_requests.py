"""POST /v1/requests and GET /v1/status over real HTTP: answers, refusals, error mapping."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from project_o.gateway import MAX_DEADLINE_MS

from .conftest import SECRET, ScriptedService

pytestmark = pytest.mark.anyio


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert isinstance(error["type"], str) and isinstance(error["message"], str)
    return error


# -- answers ----------------------------------------------------------------


@pytest.mark.parametrize("value", [{"question": "2+2?"}, [1, "two", None], "text", 3.5, None])
async def test_input_reaches_the_service_and_output_comes_back(
    client: httpx.AsyncClient, service: ScriptedService, value: Any
) -> None:
    response = await client.post("/v1/requests", json={"input": value})
    assert response.status_code == 200
    body = response.json()
    assert body["output"] == value
    assert body["version"] == "v-test"
    assert body["latency_ms"] == 0.25
    assert body["request_id"].startswith("req-")
    assert service.calls[-1] == (value, None)


async def test_deadline_is_passed_in_seconds(
    client: httpx.AsyncClient, service: ScriptedService
) -> None:
    response = await client.post("/v1/requests", json={"input": "x", "deadline_ms": 2500})
    assert response.status_code == 200
    assert service.calls[-1] == ("x", 2.5)


@pytest.mark.parametrize(("deadline", "seconds"), [(2.0, 0.002), (1.5, 0.0015)])
async def test_any_json_number_is_a_deadline(
    client: httpx.AsyncClient, service: ScriptedService, deadline: float, seconds: float
) -> None:
    response = await client.post("/v1/requests", json={"input": "x", "deadline_ms": deadline})
    assert response.status_code == 200
    assert service.calls[-1] == ("x", seconds)


@pytest.mark.parametrize(
    ("raw", "field", "problem"),
    [
        (b'{"input": 123456789012345678901234567890}', "input", "64-bit range"),
        (b'{"input": {"a": [1, -9223372036854775809]}}', "input.a.1", "64-bit range"),
        (b'{"input": "\\ud800"}', "input", "lone surrogate"),
        (b'{"input": {"k": "x\\udfffy"}}', "input.k", "lone surrogate"),
        (b'{"input": {"\\udc00": 1}}', "input", "map key"),
    ],
    ids=["int-over-64-bits", "nested-int-under", "lone-surrogate", "nested-surrogate", "key"],
)
async def test_values_the_wire_cannot_carry_are_422_naming_the_field(
    client: httpx.AsyncClient, service: ScriptedService, raw: bytes, field: str, problem: str
) -> None:
    calls_before = len(service.calls)
    response = await client.post("/v1/requests", content=raw,
                                 headers={"content-type": "application/json"})
    assert response.status_code == 422
    [named] = error_of(response)["fields"]
    assert named["field"] == field and problem in named["problem"]
    assert len(service.calls) == calls_before


async def test_largest_deadline_is_accepted(
    client: httpx.AsyncClient, service: ScriptedService
) -> None:
    response = await client.post("/v1/requests", json={"input": 1, "deadline_ms": MAX_DEADLINE_MS})
    assert response.status_code == 200
    assert service.calls[-1] == (1, MAX_DEADLINE_MS / 1000)


async def test_status_is_passed_through(
    client: httpx.AsyncClient, service: ScriptedService
) -> None:
    response = await client.get("/v1/status")
    assert response.status_code == 200
    assert response.json() == service.snapshot


@pytest.mark.parametrize(
    "content_type", [None, "application/json; charset=utf-8", "application/problem+json"]
)
async def test_json_content_types_are_accepted(
    client: httpx.AsyncClient, content_type: str | None
) -> None:
    request = client.build_request("POST", "/v1/requests", content=b'{"input": "hi"}')
    if content_type is None:
        assert "content-type" not in request.headers  # httpx names none for raw bytes
    else:
        request.headers["content-type"] = content_type
    response = await client.send(request)
    assert response.status_code == 200
    assert response.json()["output"] == "hi"


# -- the service's errors ---------------------------------------------------


async def test_poison_request_is_502_with_its_reason(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/requests", json={"input": {"raise": "poison"}})
    assert response.status_code == 502
    error = error_of(response)
    assert error["type"] == "PoisonRequest"
    assert "killed 2 instances in a row" in error["message"]
    assert error["request_id"] == "req-9"


async def test_handler_failure_is_502_with_kind_and_message_but_no_traceback(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/v1/requests", json={"input": {"raise": "failed"}})
    assert response.status_code == 502
    error = error_of(response)
    assert error["type"] == "RequestFailed"
    assert error["kind"] == "KeyError"
    assert "'missing'" in error["message"]
    assert SECRET not in response.text


async def test_no_instance_is_503_with_retry_after(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/requests", json={"input": {"raise": "unavailable"}})
    assert response.status_code == 503
    assert response.headers["retry-after"] == "3"  # 2.5 s rounded up to whole seconds
    error = error_of(response)
    assert error["type"] == "NoInstanceAvailable"
    assert error["retry_after_s"] == 2.5


async def test_timeout_is_504(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/requests", json={"input": {"raise": "timeout"}})
    assert response.status_code == 504
    error = error_of(response)
    assert error["type"] == "RequestTimeout"
    assert error["request_id"] == "req-7"


async def test_unexpected_service_bug_is_500_without_details(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/v1/requests", json={"input": {"raise": "bug"}})
    assert response.status_code == 500
    assert error_of(response)["type"] == "InternalError"
    assert SECRET not in response.text
    assert "Traceback" not in response.text
    # ...and the gateway keeps serving.
    assert (await client.post("/v1/requests", json={"input": 1})).status_code == 200


async def test_output_that_cannot_be_json_is_502(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/requests", json={"input": {"return": "bytes"}})
    assert response.status_code == 502
    error = error_of(response)
    assert error["type"] == "InvalidOutput"
    assert error["request_id"].startswith("req-")


# -- refusals of the body ---------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "hint"),
    [
        (b'{"input": ', "not valid JSON"),
        (b"{'input': 1}", "not valid JSON"),
        (b'{"input": NaN}', "NaN is not a JSON value"),
        (b'{"input": "\xff"}', "not valid JSON"),
        (b"", "empty"),
        (b"   \n", "empty"),
        (b"[" * 100_000 + b"]" * 100_000, "too deeply"),
    ],
    ids=["truncated", "single-quotes", "nan", "bad-utf8", "empty", "blank", "deep"],
)
async def test_bad_json_is_400_with_a_clear_message(
    client: httpx.AsyncClient, raw: bytes, hint: str
) -> None:
    response = await client.post(
        "/v1/requests", content=raw, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    error = error_of(response)
    assert error["type"] == "InvalidJSON"
    assert hint in error["message"]


async def test_unknown_field_is_422_and_named(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/requests", json={"input": 1, "priority": "high"})
    assert response.status_code == 422
    error = error_of(response)
    assert error["type"] == "InvalidRequest"
    assert "priority" in error["message"]
    assert [field["field"] for field in error["fields"]] == ["priority"]


async def test_missing_input_is_422_and_named(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/requests", json={"deadline_ms": 10})
    assert response.status_code == 422
    assert [field["field"] for field in error_of(response)["fields"]] == ["input"]


@pytest.mark.parametrize("body", [[1, 2], "input", 7])
async def test_body_that_is_not_an_object_is_422(client: httpx.AsyncClient, body: Any) -> None:
    response = await client.post("/v1/requests", json=body)
    assert response.status_code == 422
    assert error_of(response)["type"] == "InvalidRequest"


@pytest.mark.parametrize(
    "deadline",
    [0, -5, "100", True, MAX_DEADLINE_MS + 1, 10**400],
    ids=["zero", "negative", "string", "bool", "over-a-day", "huge"],
)
async def test_bad_deadline_is_422_and_never_reaches_the_service(
    client: httpx.AsyncClient, service: ScriptedService, deadline: Any
) -> None:
    calls_before = len(service.calls)
    response = await client.post("/v1/requests", json={"input": 1, "deadline_ms": deadline})
    assert response.status_code == 422
    error = error_of(response)
    assert [field["field"] for field in error["fields"]] == ["deadline_ms"]
    assert len(service.calls) == calls_before


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
async def test_non_json_content_type_is_415(client: httpx.AsyncClient, content_type: str) -> None:
    response = await client.post(
        "/v1/requests", content=b'{"input": 1}', headers={"content-type": content_type}
    )
    assert response.status_code == 415
    error = error_of(response)
    assert error["type"] == "UnsupportedMediaType"
    assert "application/json" in error["message"]


# -- routing ----------------------------------------------------------------


async def test_unknown_path_is_404_in_the_error_shape(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/nothing-here")
    assert response.status_code == 404
    assert error_of(response)["type"] == "NotFound"


async def test_wrong_method_is_405_in_the_error_shape(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/requests")
    assert response.status_code == 405
    assert error_of(response)["type"] == "MethodNotAllowed"
    assert "POST" in response.headers["allow"]


async def test_405_allows_every_method_served_at_the_path(client: httpx.AsyncClient) -> None:
    # GET and POST on this path are two routes; Allow must name both.
    response = await client.options("/v1/evolution/experiments")
    assert response.status_code == 405
    allowed = {method.strip() for method in response.headers["allow"].split(",")}
    assert {"GET", "POST"} <= allowed and "DELETE" not in allowed
