"""GET /metrics of a real supervisor: parses, and its figures match what happened."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.samples import Sample

from tests.supervisor.harness import CHAOS_AGENT, FAST_HEARTBEAT, Stack

from .test_metrics import FAMILIES, samples, value

WRITES = 5


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = Stack(
        tmp_path_factory.mktemp("metrics") / "vault", ["--agent", str(CHAOS_AGENT), *FAST_HEARTBEAT]
    )
    yield running
    running.stop()


def scrape(stack: Stack) -> dict[str, list[Sample]]:
    assert stack.http is not None
    # No token: a scraper holds none.
    response = httpx.get(stack.http.base_url.join("/metrics"), timeout=30)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return samples(response.text)


def wait_for_standby(stack: Stack, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        roles = {i["role"] for i in stack.status()["instances"]}
        if roles == {"main", "standby"}:
            return
        time.sleep(0.05)
    raise AssertionError(f"no standby within {timeout} s")


def test_figures_match_the_traffic(stack: Stack) -> None:
    for n in range(WRITES):
        assert stack.do("set", key=f"k{n}", value=n).status_code == 200
    failed = stack.do("raise")
    assert failed.status_code == 502
    reply = stack.do("echo", input="rate me").json()
    assert stack.http is not None
    rated = stack.http.post("/v1/feedback", json={"request_id": reply["request_id"], "score": 1})
    assert rated.status_code == 202
    wait_for_standby(stack)
    status = stack.status()
    version = status["version"]

    found = scrape(stack)

    assert FAMILIES <= set(found)
    assert (
        value(found, "project_o_requests_total", version=version, role="main", outcome="ok")
        >= WRITES + 1
    )
    assert (
        value(found, "project_o_requests_total", version=version, role="main", outcome="failed")
        >= 1
    )
    assert value(found, "project_o_errors_total", version=version, type="RequestFailed") >= 1
    assert value(found, "project_o_request_latency_seconds_count", version=version, role="main") >= WRITES + 2
    assert value(found, "project_o_wal_append_seconds_count") >= WRITES
    assert value(found, "project_o_wal_last_sequence") == status["vault"]["last_sequence"]
    assert value(found, "project_o_wal_durable_sequence") == status["vault"]["durable_sequence"]
    assert value(found, "project_o_feedback_score_count", version=version) >= 1
    assert value(found, "project_o_serving_version", version=version) == 1
    assert value(found, "project_o_checkpoints_total") >= 0
    for role in ("main", "standby"):
        assert value(found, "project_o_instance_rss_bytes", role=role, version=version) > 0


@pytest.mark.slow
def test_a_crash_shows_as_a_death_and_a_restart(stack: Stack) -> None:
    wait_for_standby(stack)
    before = scrape(stack)
    restarts = value(before, "project_o_instance_restarts_total")

    os.kill(stack.main_pid(), signal.SIGKILL)
    assert stack.do("echo", input=1).status_code == 200

    deadline = time.monotonic() + 10
    while True:  # the death is recorded once the zygote reports the exit
        after = scrape(stack)
        deaths = [
            s
            for s in after["project_o_instance_deaths"]
            if s.name.endswith("_total") and s.labels == {"kind": "crash", "role": "main"}
        ]
        if deaths or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert deaths and deaths[0].value >= 1
    assert value(after, "project_o_instance_restarts_total") >= restarts + 1
