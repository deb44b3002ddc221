"""GET /metrics: open, Prometheus text; SupervisorMetrics renders what it observed."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from project_o.supervisor.events import EventLog
from project_o.supervisor.metrics import LiveInstance, LiveState, SupervisorMetrics

from .conftest import METRICS_BODY

#: every family GET /metrics must carry (names as the parser reports them)
FAMILIES = {
    "project_o_requests",
    "project_o_request_latency_seconds",
    "project_o_errors",
    "project_o_instance_deaths",
    "project_o_events",
    "project_o_wal_append_seconds",
    "project_o_checkpoints",
    "project_o_feedback_score",
    "project_o_instance_restarts",
    "project_o_wal_last_sequence",
    "project_o_wal_durable_sequence",
    "project_o_instance_rss_bytes",
    "project_o_serving_version",
}


def samples(text: str) -> dict[str, list[Sample]]:
    """Parsed samples by family name (the parser raises on malformed text)."""
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def value(found: dict[str, list[Sample]], name: str, **labels: str) -> float:
    family = name.removesuffix("_total").removesuffix("_count").removesuffix("_sum")
    matches = [s.value for s in found[family] if s.name == name and s.labels == labels]
    assert len(matches) == 1, (name, labels, found[family])
    return matches[0]


# -- the route ------------------------------------------------------------------


@pytest.mark.anyio
async def test_metrics_is_open_and_passes_the_service_text_through(
    anonymous: httpx.AsyncClient,
) -> None:
    response = await anonymous.get("/metrics")
    assert response.status_code == 200
    assert response.content == METRICS_BODY
    assert response.headers["content-type"].startswith("text/plain")


@pytest.mark.anyio
async def test_metrics_is_read_only(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.post("/metrics", content=b"x")
    assert response.status_code == 405


# -- SupervisorMetrics ------------------------------------------------------------

LIVE = LiveState(
    serving_version="v2",
    restarts=3,
    wal_last_sequence=42,
    wal_durable_sequence=40,
    instances=[LiveInstance("main", "v2", 50_000_000), LiveInstance("standby", "v2", 30_000_000)],
)


def test_a_fresh_registry_renders_every_family_and_parses() -> None:
    metrics = SupervisorMetrics()
    metrics.set_probe(lambda: LIVE)
    scrape = metrics.render()
    assert scrape.content_type.startswith("text/plain; version=0.0.4")
    assert FAMILIES <= set(samples(scrape.body.decode()))


def test_observations_show_up_with_their_labels() -> None:
    metrics = SupervisorMetrics()
    metrics.set_probe(lambda: LIVE)
    for seconds in (0.002, 0.004):
        metrics.observe_request("v2", "main", "ok", seconds)
    metrics.observe_request("v2", "main", "timeout", 1.0, "RequestTimeout")
    metrics.observe_wal_append(0.0007)
    metrics.checkpoint_written()
    metrics.observe_feedback("v2", -0.5)

    found = samples(metrics.render().body.decode())

    assert value(found, "project_o_requests_total", version="v2", role="main", outcome="ok") == 2
    assert (
        value(found, "project_o_requests_total", version="v2", role="main", outcome="timeout") == 1
    )
    assert value(found, "project_o_errors_total", version="v2", type="RequestTimeout") == 1
    assert value(found, "project_o_request_latency_seconds_count", version="v2", role="main") == 3
    assert value(found, "project_o_request_latency_seconds_sum", version="v2", role="main") == pytest.approx(
        1.006
    )
    assert value(found, "project_o_wal_append_seconds_count") == 1
    assert value(found, "project_o_checkpoints_total") == 1
    assert value(found, "project_o_feedback_score_count", version="v2") == 1
    bands = {
        s.labels["le"]: s.value
        for s in found["project_o_feedback_score"]
        if s.name.endswith("_bucket")
    }
    assert (bands["-1.0"], bands["-0.5"], bands["0.0"]) == (0, 1, 1)


def test_live_figures_are_read_at_scrape_time() -> None:
    metrics = SupervisorMetrics()
    state = {"live": LIVE}
    metrics.set_probe(lambda: state["live"])
    first = samples(metrics.render().body.decode())
    assert value(first, "project_o_wal_last_sequence") == 42
    assert value(first, "project_o_wal_durable_sequence") == 40
    assert value(first, "project_o_instance_restarts_total") == 3
    assert value(first, "project_o_instance_rss_bytes", role="main", version="v2") == 50_000_000
    assert value(first, "project_o_instance_rss_bytes", role="standby", version="v2") == 30_000_000
    assert value(first, "project_o_serving_version", version="v2") == 1

    state["live"] = LiveState("v3", 4, 50, 50, [LiveInstance("main", "v3", 1)])
    second = samples(metrics.render().body.decode())
    assert value(second, "project_o_wal_last_sequence") == 50
    assert value(second, "project_o_serving_version", version="v3") == 1
    assert [s.labels["role"] for s in second["project_o_instance_rss_bytes"]] == ["main"]


def test_before_the_supervisor_starts_live_figures_are_absent_not_wrong() -> None:
    metrics = SupervisorMetrics()  # no probe yet
    found = samples(metrics.render().body.decode())
    assert "project_o_wal_last_sequence" not in found
    assert "project_o_requests" in found


def test_events_count_deaths_by_kind_and_role() -> None:
    metrics = SupervisorMetrics()
    events = EventLog()  # no catalog: memory only
    events.subscribe(metrics.on_event)
    events.record("crash", "main-1", "exit code 3", role="main")
    events.record("hang", "main-2", "no heartbeat", role="main")
    events.record("crash", "standby-3", "killed by signal 9", role="standby")
    events.record("takeover", "standby-3", "promoted")
    events.close()

    found = samples(metrics.render().body.decode())

    assert value(found, "project_o_instance_deaths_total", kind="crash", role="main") == 1
    assert value(found, "project_o_instance_deaths_total", kind="hang", role="main") == 1
    assert value(found, "project_o_instance_deaths_total", kind="crash", role="standby") == 1
    assert value(found, "project_o_events_total", kind="takeover") == 1


def test_two_supervisors_in_one_process_keep_separate_figures() -> None:
    first, second = SupervisorMetrics(), SupervisorMetrics()
    first.observe_request("v1", "main", "ok", 0.01)
    found = samples(second.render().body.decode())
    assert not [s for s in found["project_o_requests"] if s.name.endswith("_total")]
