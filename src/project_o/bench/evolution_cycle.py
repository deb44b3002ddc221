"""``project-o bench evolution-cycle``: how fast the evolution control tells better from worse.

What is measured, against a real supervisor serving the demo agent
(:mod:`project_o.demo.agent`, a ~5 ms memory search)::

    steady load   Pacer: RATE requests/s of {"do": "ask"} (known subjects), all along
    candidates    POST /v1/evolution/experiments {"kind": "shadow", "mode": "split",
                  "share": 0.5, ...} for, in this order:
                    worse    the same agent with 3x the per-fact work (SLOW_ROUNDS)
                    equal    the same agent with one comment added (a new version id)
                    better   the "lean" demo candidate (no per-fact work)
    per candidate requests per arm and seconds from the POST (the intent) to the first
                  decision (the shadow's verdict: stage leaves "shadow" or the
                  experiment ends), and the final status
    repeated      the equal case repeated REPEATS times by simulation: both arms
    equal check   resampled from the per-request latencies the load recorded from the
                  baseline, fed to evolution.stats.SequentialTest exactly as the
                  evolution control configures it; the share decided "better" is the false
                  promotion rate, to compare with alpha

Targets (docs/design.md, "Targets"): better and worse decided within 500 requests per arm; an
equal candidate promoted as better no more often than alpha. The shadow
splits traffic half and half, so the equal case reaches max_samples in
seconds and both arms' latencies are measured alike; the share changes
wall time, not the requests each arm needs.
"""

from __future__ import annotations

import random
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import httpx

from project_o.bench.report import Report
from project_o.demo.sources import AGENT_FILE, base_source, candidate_source, demo_facts
from project_o.evolution.stats import (
    BASELINE,
    BETTER,
    CANDIDATE,
    DEFAULT_ALPHA,
    DEFAULT_MIN_SAMPLES,
    SequentialTest,
)
from project_o.stack import Stack

__all__ = ["run", "run_with"]

#: requests per arm within which a clear difference is decided (docs/design.md, "Targets")
TARGET_REQUESTS_PER_ARM: Final = 500
#: the experiment defaults (docs/design.md, "Evolution cycle"): decide from 50, give up at 500
MIN_SAMPLES: Final = DEFAULT_MIN_SAMPLES
MAX_SAMPLES: Final = 500
#: steady load, requests per second (the demo agent serves ~100/s on one core)
FULL_RATE, QUICK_RATE = 60.0, 60.0
#: simulated repetitions of the equal case
FULL_REPEATS, QUICK_REPEATS = 2_000, 300
#: shadow traffic: split (the candidate answers SHARE of real requests) so both arms'
#: latencies are measured the same way; a mirrored shadow runs beside the main and
#: its latency includes that contention
MODE: Final = "split"
SHARE: Final = 0.5
#: per-fact work multiplier of the "worse" candidate
WORSE_FACTOR: Final = 3
#: an experiment that has not decided after this long counts as undecided
EXPERIMENT_TIMEOUT_S: Final = 180.0
_POLL_S: Final = 0.05
_SHADOW_STAGES: Final = ("validating", "shadow")


def run(quick: bool, progress: Callable[[str], None]) -> Report:
    """The benchmark behind ``project-o bench evolution-cycle``."""
    return run_with(QUICK_RATE if quick else FULL_RATE,
                    QUICK_REPEATS if quick else FULL_REPEATS, quick=quick, progress=progress)


def run_with(rate: float, repeats: int, *, quick: bool,
             progress: Callable[[str], None]) -> Report:
    """Measure the three candidates at ``rate`` req/s and simulate ``repeats`` equal runs."""
    report = Report("evolution-cycle", quick)
    with tempfile.TemporaryDirectory(prefix="project-o-bench-evo-") as tmp, \
            Stack(Path(tmp) / "vault", AGENT_FILE) as stack:
        progress("teaching the demo agent its facts")
        subjects = _teach(stack)
        pacer = Pacer(stack, subjects, rate)
        pacer.start()
        try:
            for name, source in _candidates():
                progress(f"{name} candidate at {rate:g} req/s")
                report.rows.append(_experiment(stack, name, source, pacer))
        finally:
            pacer.stop()
        baseline = pacer.latencies(version=pacer.first_version)
    progress(f"simulating {repeats} equal experiments from {len(baseline)} recorded samples")
    false_rate = simulate_equal(baseline, repeats, random.Random(5))
    _targets(report, false_rate, repeats, len(baseline))
    return report


def _candidates() -> list[tuple[str, str]]:
    base = base_source()
    worse = base.replace("SLOW_ROUNDS = 400", f"SLOW_ROUNDS = {400 * WORSE_FACTOR}")
    assert worse != base, "the demo agent's SLOW_ROUNDS line moved; update WORSE_FACTOR's edit"
    equal = base + "\n# an equal candidate: the same code, a new version id\n"
    return [("worse", worse), ("equal", equal), ("better", candidate_source("lean"))]


def _teach(stack: Stack) -> list[str]:
    for subject, text in demo_facts():
        stack.ask({"do": "teach", "subject": subject, "text": text}).raise_for_status()
    return [subject for subject, _ in demo_facts()]


def _experiment(stack: Stack, name: str, source: str, pacer: Pacer) -> dict[str, Any]:
    body = {"kind": "shadow", "mode": MODE, "share": SHARE, "min_samples": MIN_SAMPLES,
            "max_samples": MAX_SAMPLES, "metric": "latency",
            "hypothesis": f"bench: a {name} candidate", "candidate": {"source": source}}
    with stack.client() as http:
        posted = http.post("/v1/evolution/experiments", json=body)
        start = time.monotonic()
        if posted.status_code != 201:
            return {"candidate": name, "error": f"{posted.status_code}: {posted.text[:200]}"}
        return _follow(http, posted.json()["id"], name, start)


def _follow(http: httpx.Client, experiment_id: str, name: str, start: float) -> dict[str, Any]:
    decided: dict[str, Any] | None = None
    while True:
        experiment = http.get(f"/v1/evolution/experiments/{experiment_id}").json()
        now = time.monotonic()
        if decided is None and (experiment["stage"] not in _SHADOW_STAGES
                                or experiment["status"] != "running"):
            latency = experiment.get("statistics", {}).get("latency", {})
            decided = {"seconds": now - start, "samples": dict(experiment["samples"]),
                       "stage": experiment["stage"], "verdict": latency.get("decision")}
        if experiment["status"] != "running" or now - start > EXPERIMENT_TIMEOUT_S:
            break
        time.sleep(_POLL_S)
    samples = (decided or {}).get("samples", experiment["samples"])
    return {
        "candidate": name,
        "shadow verdict": (decided or {}).get("verdict"),
        "requests/arm at verdict": max(samples.get("baseline", 0), samples.get("candidate", 0)),
        "s intent→verdict": (decided or {}).get("seconds"),
        "next stage": (decided or {}).get("stage"),
        "final status": experiment["status"],
        "s intent→final": time.monotonic() - start,
        "reason": (experiment.get("reason") or "")[:60],
    }


def simulate_equal(samples: list[float], repeats: int, rng: random.Random, *,
                   alpha: float = DEFAULT_ALPHA) -> float:
    """Share of ``repeats`` equal experiments (both arms drawn from ``samples``) that
    SequentialTest decides ``"better"``: the false promotion rate."""
    if len(samples) < MIN_SAMPLES:
        return float("nan")
    better = 0
    for _ in range(repeats):
        test = SequentialTest("latency", higher_is_better=False, alpha=alpha,
                              min_samples=MIN_SAMPLES, max_samples=MAX_SAMPLES)
        while test.decision() == "continue":
            test.add(BASELINE, rng.choice(samples))
            test.add(CANDIDATE, rng.choice(samples))
        better += test.decision() == BETTER
    return better / repeats


def _targets(report: Report, false_rate: float, repeats: int, recorded: int) -> None:
    by_name = {row["candidate"]: row for row in report.rows}
    for name, verdict in (("better", "better"), ("worse", "worse")):
        row = by_name.get(name, {})
        n = row.get("requests/arm at verdict") or float("inf")
        report.target(f"{name} candidate decided ({verdict}) within 500 requests per arm",
                      n, f"<= {TARGET_REQUESTS_PER_ARM}",
                      row.get("shadow verdict") == verdict and n <= TARGET_REQUESTS_PER_ARM)
    equal = by_name.get("equal", {})
    report.target("equal candidate not promoted (real run)",
                  1.0 if equal.get("final status") == "promoted" else 0.0, "0 (not promoted)",
                  equal.get("final status") not in (None, "promoted"))
    report.target(f"equal promoted as better, {repeats} simulated runs", false_rate,
                  f"<= alpha {DEFAULT_ALPHA}", false_rate <= DEFAULT_ALPHA)
    report.notes.append(
        f"steady load from one paced client; shadow mode {MODE}, share {SHARE:g}. Verdict timing is polled every {_POLL_S:g} s, "
        "so requests at the verdict may be over-counted by a few.")
    report.notes.append(
        f"the repeated equal check is simulated: {repeats} runs of evolution.stats."
        f"SequentialTest (min {MIN_SAMPLES}, max {MAX_SAMPLES}, alpha {DEFAULT_ALPHA}) with "
        f"both arms resampled from {recorded} per-request latencies recorded from the "
        "baseline during the run, not repeated live experiments.")


class Pacer:
    """Sends ``{"do": "ask"}`` at a steady rate from one thread; keeps every latency."""

    def __init__(self, stack: Stack, subjects: list[str], rate: float) -> None:
        self._stack, self._subjects, self._interval = stack, subjects, 1.0 / rate
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-pacer", daemon=True)
        self._samples: list[tuple[str, float]] = []
        self.first_version: str | None = None
        self.failed = 0

    def start(self) -> None:
        """Start sending."""
        self._thread.start()

    def stop(self) -> None:
        """Stop and join."""
        self._stop.set()
        self._thread.join(30.0)

    def latencies(self, *, version: str | None) -> list[float]:
        """Server-side latencies (ms) of the answers ``version`` gave."""
        return [ms for v, ms in list(self._samples) if v == version]

    def _loop(self) -> None:
        rng, tick = random.Random(3), time.monotonic()
        with self._stack.client() as http:
            while not self._stop.is_set():
                query = {"do": "ask", "query": rng.choice(self._subjects)}
                response = http.post("/v1/requests", json={"input": query})
                if response.status_code == 200:
                    body = response.json()
                    self.first_version = self.first_version or body["version"]
                    self._samples.append((body["version"], float(body["latency_ms"])))
                else:
                    self.failed += 1
                tick += self._interval
                self._stop.wait(max(0.0, tick - time.monotonic()))
