"""What the live view is pushed, and how often: one sampler for every connected browser.

::

    LiveHub ── first subscriber starts _sample(), the last one leaving stops it
      every 0.5 s  status()              ─▶ process tree, new events (kept: the newest 10,000)
      every 1 s    metrics()             ─▶ traffic point (rates, error share, p50/p99)
                   experiments()         ─▶ each running experiment's statistics, over time
      every 2 s    catalog (read-only)   ─▶ versions digest (the page refetches on change),
                                            evolution runs (generation count; detail on change)
      ─▶ each subscriber's queue: {"type": "snapshot"} once, then {"type": "tick"}

Everything here reads what the supervisor already keeps in memory or in
its catalog; nothing runs on the request path. A browser that falls
behind loses its queued ticks and gets a fresh snapshot instead, so a slow
client costs memory bounded by its queue. What is pushed is capped: the
newest 500 events in a snapshot (the page pages back through
``/ui/api/events``), and versions only as a count and a digest.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections import deque
from collections.abc import AsyncGenerator, Callable
from pathlib import Path
from typing import Any, Final

from project_o.dashboard import runs_view
from project_o.dashboard.catalog_view import read_only
from project_o.dashboard.recorder import append_point
from project_o.dashboard.traffic import TrafficWindow, parse_scrape
from project_o.dashboard.tree import process_tree
from project_o.supervisor.api import AgentService

__all__ = ["MAX_EVENTS", "SNAPSHOT_EVENTS", "LiveHub"]

logger = logging.getLogger(__name__)

TICK_S: Final = 0.5
#: events kept for the timeline, and the newest sent in one snapshot
MAX_EVENTS: Final = 10_000
SNAPSHOT_EVENTS: Final = 500
#: traffic and experiment points kept: 10 minutes at one a second
MAX_POINTS: Final = 600
#: experiments sent per tick (newest first)
MAX_EXPERIMENTS: Final = 20
#: messages a subscriber may have waiting before it is resynchronized
QUEUE_SIZE: Final = 32


class LiveHub:
    """Samples ``service`` while at least one browser watches, and fans the result out."""

    def __init__(self, service: AgentService, *, tick_s: float = TICK_S,
                 clock: Callable[[], float] = time.time) -> None:
        self._service = service
        self._tick_s = tick_s
        self._clock = clock
        self._queues: set[asyncio.Queue[dict[str, Any]]] = set()
        self._task: asyncio.Task[None] | None = None
        self.run_dirs: list[Path] = []
        #: the supervisor's vault, where experiment points are kept (see recorder)
        self.vault: Path | None = None
        self.recorder: asyncio.Task[None] | None = None
        self.events: deque[dict[str, Any]] = deque(maxlen=MAX_EVENTS)
        self._seen: set[tuple[Any, ...]] = set()
        self.traffic: deque[dict[str, Any]] = deque(maxlen=MAX_POINTS)
        self._window = TrafficWindow()
        self.experiment_points: dict[str, deque[dict[str, Any]]] = {}
        self._state: dict[str, Any] = {}
        self._run_marks: dict[str, int] = {}

    # -- subscribers ------------------------------------------------------

    async def subscribe(self) -> AsyncGenerator[dict[str, Any], None]:
        """Messages for one browser: a snapshot, then a tick every ``tick_s``."""
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE_SIZE)
        self._queues.add(queue)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._sample(), name="dashboard live sampler")
        try:
            if self._state:
                yield self.snapshot()
            while True:
                yield await queue.get()
        finally:
            self._queues.discard(queue)
            if not self._queues and self._task is not None:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
                self._task = None

    @property
    def subscribers(self) -> int:
        """How many browsers are connected."""
        return len(self._queues)

    def snapshot(self) -> dict[str, Any]:
        """Everything a newly connected page needs to draw."""
        return {"type": "snapshot", **self._state,
                "events": list(self.events)[-SNAPSHOT_EVENTS:],
                "events_total": len(self.events), "traffic": list(self.traffic),
                "experiment_points": {k: list(v) for k, v in self.experiment_points.items()}}

    def _publish(self, tick: dict[str, Any]) -> None:
        for queue in self._queues:
            if queue.full():  # fallen behind: drop what waits, start it over
                while not queue.empty():
                    queue.get_nowait()
                queue.put_nowait(self.snapshot())
            else:
                queue.put_nowait(tick)

    # -- sampling ---------------------------------------------------------

    async def _sample(self) -> None:
        count = 0
        while True:
            try:
                tick = await self._tick(count)
            except Exception:  # a bad sample must not end the live view
                logger.exception("dashboard sample failed")
                tick = None
            if tick is not None:
                first = not self._state.get("ready")
                self._state["ready"] = True  # a page's first message is a whole snapshot
                self._publish(self.snapshot() if first else tick)
            count += 1
            await asyncio.sleep(self._tick_s)

    async def record(self) -> None:
        """While no page is open, still sample running experiments once a second.

        Their charts then exist for whoever looks later, at the cost of one
        read of the experiments a second.
        """
        while True:
            await asyncio.sleep(2 * self._tick_s)
            if self._queues:
                continue  # the sampler records while pages are open
            try:
                self.vault = catalog_parent(self._service.status())
                experiments = await self._experiments()
                if experiments:
                    self._state["experiments"] = experiments
                    self._experiment_points(experiments, self._clock())
            except Exception:  # recording must never end with an error
                logger.exception("dashboard experiment recorder failed")

    async def _tick(self, count: int) -> dict[str, Any]:
        status = self._service.status()
        self.vault = catalog_parent(status)
        now = self._clock()
        running = [x for x in self._state.get("experiments", []) if x.get("status") == "running"]
        candidate = running[0].get("candidate_version") if running else None
        tick: dict[str, Any] = {"type": "tick", "t": now,
                                "tree": process_tree(status, now, candidate),
                                "events": self._new_events(status.get("events", [])),
                                "events_total": len(self.events)}
        tick["vault"] = self._state["vault"] = {**status.get("vault", {}),
                                                **self._state.get("vault_rates", {})}
        self._state["tree"] = tick["tree"]
        self._state["serving"] = tick["serving"] = status.get("version")
        if count % 2 == 0:
            tick.update(await self._every_second(now))
        if count % 4 == 0:
            tick.update(await asyncio.to_thread(self._from_catalogs, status))
        return tick

    def _new_events(self, recent: list[dict[str, Any]]) -> list[dict[str, Any]]:
        fresh = []
        for event in recent:
            key = (event.get("ts"), event.get("kind"), event.get("subject"))
            if key in self._seen:
                continue
            self._seen.add(key)
            shown = {k: event.get(k) for k in ("ts", "kind", "subject", "reason")}
            self.events.append(shown)
            fresh.append(shown)
        if len(self._seen) > 4 * MAX_EVENTS:  # forget keys of events long scrolled away
            self._seen = {(e["ts"], e["kind"], e["subject"]) for e in self.events}
        return fresh

    async def _every_second(self, now: float) -> dict[str, Any]:
        found: dict[str, Any] = {}
        scrape = self._service.metrics()
        point = self._window.point(parse_scrape(scrape.body.decode(), now))
        if point is not None:
            self.traffic.append(point)
            self._state["vault_rates"] = point["vault"]
            found["traffic_point"] = point
        experiments = await self._experiments()
        if experiments is not None:
            found["experiments"] = self._state["experiments"] = experiments
            found["experiment_points"] = self._experiment_points(experiments, now)
        return found

    async def _experiments(self) -> list[dict[str, Any]] | None:
        method = getattr(self._service, "experiments", None)
        if method is None:
            return None
        listed = await method()
        items = listed.get("experiments", []) if isinstance(listed, dict) else listed
        return list(items)[:MAX_EXPERIMENTS]

    def _experiment_points(self, experiments: list[dict[str, Any]],
                           now: float) -> dict[str, dict[str, Any]]:
        points = {}
        for experiment in experiments:
            if experiment.get("status") != "running":
                continue
            point = {"t": now, "stage": experiment.get("stage"),
                     "samples": experiment.get("samples", {}),
                     "metrics": {name: _bounds(summary) for name, summary
                                 in (experiment.get("statistics") or {}).items()}}
            self.experiment_points.setdefault(
                experiment["id"], deque(maxlen=MAX_POINTS)).append(point)
            points[experiment["id"]] = point
            if self.vault is not None:
                append_point(self.vault, experiment["id"], point)
        return points

    def _from_catalogs(self, status: dict[str, Any]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        catalog = catalog_of(status)
        if catalog is not None and catalog.is_file():
            found["versions"] = self._state["versions"] = versions_digest(catalog)
        runs = self.runs()
        if runs != self._state.get("runs"):
            found["runs"] = self._state["runs"] = runs
        return found

    def runs(self) -> list[dict[str, Any]]:
        """Every evolution run in the watched run directories, newest first."""
        listed: list[dict[str, Any]] = []
        for run_dir in self.run_dirs:
            path = run_dir / runs_view.CATALOG_FILE
            if path.is_file():
                listed.extend({**run, "dir": str(run_dir)} for run in runs_view.list_runs(path))
        return sorted(listed, key=lambda r: -r["started"])


def catalog_parent(status: dict[str, Any]) -> Path | None:
    """The vault directory a status describes."""
    path = (status.get("vault") or {}).get("path")
    return None if not path else Path(path)


def catalog_of(status: dict[str, Any]) -> Path | None:
    """The catalog of the vault a status describes."""
    path = (status.get("vault") or {}).get("path")
    return None if not path else Path(path) / "catalog.sqlite"


def versions_digest(catalog: Path) -> dict[str, Any]:
    """How many versions, and a digest that changes when one is added or changes status."""
    with read_only(catalog) as conn:
        rows = conn.execute("SELECT id, status FROM versions ORDER BY id").fetchall()
    digest = hashlib.sha256(repr(rows).encode()).hexdigest()[:16]
    return {"total": len(rows), "digest": digest}


def _bounds(summary: dict[str, Any]) -> dict[str, Any]:
    """One metric's test at this moment: the difference, its bounds, and the line to clear.

    ``better_beyond`` is the decision margin in the metric's units (a share
    of the baseline's mean), on the side where the candidate is better.
    """
    interval = summary.get("confidence_sequence")
    baseline = (summary.get("mean") or {}).get("baseline") or 0.0
    margin = float(summary.get("margin") or 0.0) * abs(float(baseline))
    return {"difference": summary.get("difference"),
            "better_beyond": margin if summary.get("higher_is_better", True) else -margin,
            "low": interval[0] if interval else None, "high": interval[1] if interval else None,
            "n": min((summary.get("n") or {}).values(), default=0),
            "decision": summary.get("decision")}
