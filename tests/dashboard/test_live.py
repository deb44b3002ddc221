"""The live hub on a scripted service: what it keeps, what it pushes, and to whom."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from project_o.dashboard.live import MAX_EVENTS, QUEUE_SIZE, SNAPSHOT_EVENTS, LiveHub
from project_o.supervisor.api import MetricsText
from project_o.supervisor.metrics import SupervisorMetrics


class Service:
    """Emits ``per_tick`` new events each time its status is read (50 visible at once)."""

    def __init__(self, per_tick: int) -> None:
        self.per_tick = per_tick
        self.emitted = 0
        self.meter = SupervisorMetrics()

    def status(self) -> dict[str, Any]:
        start = self.emitted
        self.emitted += self.per_tick
        events = [{"ts": 1000.0 + n, "kind": "crash" if n % 7 == 0 else "start",
                   "subject": f"main-{n}", "reason": f"event {n}"}
                  for n in range(start, self.emitted)][-50:]
        return {"supervisor_pid": None, "instances": [], "vault": {}, "events": events,
                "version": "v1"}

    def metrics(self) -> MetricsText:
        return self.meter.render()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_events_are_kept_once_each_and_capped() -> None:
    service = Service(per_tick=50)
    hub = LiveHub(service)  # type: ignore[arg-type]
    for count in range(250):  # 12,500 events
        await hub._tick(count)
    assert len(hub.events) == MAX_EVENTS
    subjects = [e["subject"] for e in hub.events]
    assert len(set(subjects)) == MAX_EVENTS
    assert subjects[-1] == "main-12499"
    hub._state["ready"] = True
    snapshot = hub.snapshot()
    assert len(snapshot["events"]) == SNAPSHOT_EVENTS
    assert snapshot["events_total"] == MAX_EVENTS


@pytest.mark.anyio
async def test_a_subscriber_gets_a_snapshot_then_ticks_and_the_sampler_stops_after() -> None:
    hub = LiveHub(Service(per_tick=2), tick_s=0.01)  # type: ignore[arg-type]
    kinds = []
    async with contextlib.aclosing(hub.subscribe()) as messages:
        async for message in messages:
            kinds.append(message["type"])
            if len(kinds) == 5:
                break
    assert kinds[0] == "snapshot" and set(kinds[1:]) == {"tick"}
    assert hub.subscribers == 0
    await asyncio.sleep(0.05)
    assert hub._task is None


@pytest.mark.anyio
async def test_a_subscriber_that_falls_behind_is_resynchronized_not_buffered() -> None:
    hub = LiveHub(Service(per_tick=1), tick_s=3600.0)  # type: ignore[arg-type]
    messages = hub.subscribe()
    first = await messages.__anext__()
    assert first["type"] == "snapshot"
    for n in range(QUEUE_SIZE * 3):  # ticks nobody reads
        hub._publish({"type": "tick", "n": n})
    queue = next(iter(hub._queues))
    assert queue.qsize() <= QUEUE_SIZE
    waiting = [await messages.__anext__() for _ in range(queue.qsize())]
    assert waiting[0]["type"] == "snapshot"  # started over, then the newest ticks
    assert [m["n"] for m in waiting[1:]] == list(range(QUEUE_SIZE * 3 - len(waiting) + 1,
                                                       QUEUE_SIZE * 3))
    await messages.aclose()
