"""GET /v1/versions of a real supervisor: the catalog's versions, and the serving one."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.supervisor.harness import CHAOS_AGENT, Stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = Stack(
        tmp_path_factory.mktemp("versions") / "vault", ["--agent", str(CHAOS_AGENT), "--no-standby"]
    )
    yield running
    running.stop()


def test_versions_lists_the_serving_version(stack: Stack) -> None:
    assert stack.http is not None
    serving = stack.status()["version"]

    response = stack.http.get("/v1/versions")

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["serving"] == serving
    (version,) = [v for v in body["versions"] if v["serving"]]
    assert version["id"] == serving
    assert version["status"] in ("serving", "good")
    assert version["operator"] == "user"
    assert version["parents"] == []
    assert isinstance(version["created_at"], float)


def test_bad_calls_to_versions_get_a_clear_4xx(stack: Stack) -> None:
    assert stack.http is not None
    anonymous = httpx.get(stack.http.base_url.join("/v1/versions"), timeout=30)
    assert anonymous.status_code == 401
    assert "Authorization" in anonymous.json()["error"]["message"]
    posted = stack.http.post("/v1/versions", json={"id": "x"})
    assert posted.status_code == 405
    assert posted.json()["error"]["type"] == "MethodNotAllowed"
