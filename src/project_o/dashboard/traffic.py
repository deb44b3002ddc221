"""Request rate, error rate and latency quantiles over time, from the Prometheus text.

The dashboard reads the same ``GET /metrics`` figures a scraper does
(cumulative counters and histograms) and differences two scrapes::

    scrape(t0) ─┐
    scrape(t1) ─┴─▶ per (version, role): requests/s, error share,
                                         p50 / p99 latency (histogram buckets, interpolated)
                    vault:               WAL append p50 / p99, checkpoints, sequences

A quantile from buckets is only as fine as the buckets; it is the
estimate Prometheus' ``histogram_quantile`` gives.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from prometheus_client.parser import text_string_to_metric_families

__all__ = ["Scrape", "TrafficWindow", "parse_scrape", "quantile"]

PREFIX: Final = "project_o_"
_LabelKey = tuple[str, ...]


@dataclass
class Scrape:
    """The cumulative figures of one ``/metrics`` read."""

    t: float
    requests: dict[tuple[str, str], dict[str, float]] = field(default_factory=dict)
    latency: dict[tuple[str, str], dict[float, float]] = field(default_factory=dict)
    wal: dict[float, float] = field(default_factory=dict)
    checkpoints: float = 0.0
    gauges: dict[str, float] = field(default_factory=dict)


def parse_scrape(text: str, t: float) -> Scrape:
    """The figures the dashboard needs from Prometheus text ``text`` read at time ``t``."""
    scrape = Scrape(t)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            _take(scrape, sample.name, sample.labels, sample.value)
    return scrape


def _take(scrape: Scrape, name: str, labels: Mapping[str, str], value: float) -> None:
    if not name.startswith(PREFIX):
        return
    name = name[len(PREFIX):]
    if name == "requests_total":
        key = (labels.get("version", "?"), labels.get("role", "?"))
        outcomes = scrape.requests.setdefault(key, {})
        outcomes[labels.get("outcome", "ok")] = value
    elif name == "request_latency_seconds_bucket":
        key = (labels.get("version", "?"), labels.get("role", "?"))
        scrape.latency.setdefault(key, {})[_le(labels)] = value
    elif name == "wal_append_seconds_bucket":
        scrape.wal[_le(labels)] = value
    elif name == "checkpoints_total":
        scrape.checkpoints = value
    elif name in ("wal_last_sequence", "wal_durable_sequence", "instance_restarts_total"):
        scrape.gauges[name] = value


def _le(labels: Mapping[str, str]) -> float:
    return float(labels.get("le", "+Inf"))


def quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """The ``q`` quantile of cumulative ``{upper bound: count}`` buckets, or None if empty."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank = q * buckets[bounds[-1]]
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower  # past the last finite bucket: its bound is all we know
            share = (rank - below) / (count - below) if count > below else 1.0
            return lower + (bound - lower) * share
        lower, below = bound, count
    return lower


def _delta(new: Mapping[Any, float], old: Mapping[Any, float]) -> dict[Any, float]:
    # A counter that went down was reset (a restarted supervisor): count from zero.
    return {k: (v - old.get(k, 0.0)) if v >= old.get(k, 0.0) else v for k, v in new.items()}


class TrafficWindow:
    """Turns successive scrapes into points: rates and quantiles between each two."""

    def __init__(self) -> None:
        self._last: Scrape | None = None

    def point(self, scrape: Scrape) -> dict[str, Any] | None:
        """The figures between the previous scrape and ``scrape`` (None for the first)."""
        last, self._last = self._last, scrape
        if last is None or scrape.t <= last.t:
            return None
        seconds = scrape.t - last.t
        return {
            "t": scrape.t,
            "series": list(self._series(scrape, last, seconds)),
            "vault": self._vault(scrape, last),
        }

    def _series(self, new: Scrape, old: Scrape, seconds: float) -> Iterable[dict[str, Any]]:
        for (version, role), outcomes in sorted(new.requests.items()):
            changed = _delta(outcomes, old.requests.get((version, role), {}))
            total = sum(changed.values())
            failed = total - changed.get("ok", 0.0)
            latency = _delta(new.latency.get((version, role), {}),
                             old.latency.get((version, role), {}))
            yield {
                "version": version, "role": role, "rps": total / seconds,
                "error_rate": failed / total if total else 0.0,
                "p50_ms": _ms(quantile(0.5, latency)), "p99_ms": _ms(quantile(0.99, latency)),
                "requests": outcomes.get("ok", 0.0) + sum(
                    v for k, v in outcomes.items() if k != "ok"),
            }

    @staticmethod
    def _vault(new: Scrape, old: Scrape) -> dict[str, Any]:
        appends = _delta(new.wal, old.wal)
        return {
            "append_p50_ms": _ms(quantile(0.5, appends)),
            "append_p99_ms": _ms(quantile(0.99, appends)),
            "appends": max(appends.values(), default=0.0),
            "checkpoints": new.checkpoints,
            "last_sequence": new.gauges.get("wal_last_sequence"),
            "durable_sequence": new.gauges.get("wal_durable_sequence"),
        }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 3)
