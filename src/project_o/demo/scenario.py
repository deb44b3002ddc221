"""The "evolution gone wrong" scenario, end to end, against a real supervisor.

::

    start supervisor (temp vault, port 0) serving demo/agent.py (slow search_facts)
    teach 30 facts ─► measure search latency ─► HealthMonitor: p95 over threshold → intent
    users start asking (Traffic, 2 threads, all along)
    candidate 1 "recursive" ─ agent: ctx.evolve ─► shadow crashes ─► rejected; users: 0 failures
    candidate 2 "lean"      ─ agent: ctx.evolve ─► shadow ─► canary 10/50/100 ─► promoted
                              same answers, faster
    candidate 3 "indexed"   ─ POST (an operator's optimisation) ─► shadow ─► canary ─► promoted
                              ─► validation: users now ask about unseen words ─► KeyError
                              ─► rolled back to candidate 2; users: 0 failures after it
    ask about every fact ─► all 30 remembered
    summary table (+ lineage tree), exit 0 only if every promise held

Every promise is checked and printed (✔/✘) by the :class:`Narrator`.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from project_o.demo.narrator import Narrator
from project_o.demo.sources import UNSEEN_QUERIES, candidate_source, demo_facts
from project_o.demo.traffic import Traffic
from project_o.evolution.perception import HealthMonitor, Thresholds
from project_o.stack import Stack

__all__ = ["DemoResult", "Scenario"]

#: how often the demo polls an experiment
POLL_S = 0.05
#: an experiment that has not decided after this long has failed the demo
EXPERIMENT_TIMEOUT_S = 90.0
#: the demo's latency threshold: the slow search is ~5 ms, the fast ones ~1 ms or less
DEMO_P95_MS = 3.0
#: how often each fact is asked when measuring latency (warm-up included)
MEASURE_ROUNDS = 3
#: validation window of candidate 3: long enough that the demo sees the stage begin
#: and shifts its traffic before the window closes
VALIDATION_REQUESTS = 400
#: share of questions about unseen words once candidate 3 is under validation
UNSEEN_SHARE = 0.25
#: pause before measuring, so no user question is still in flight
QUIET_S = 0.2
#: the stages a promotion must pass, in order
CANARY_STAGES = ("canary-10", "canary-50", "canary-100")


@dataclass
class DemoResult:
    """What the scenario found; ``ok`` only if every promise held."""

    ok: bool
    promises: list[dict[str, Any]]
    experiments: list[dict[str, Any]]
    timeline: list[dict[str, Any]]
    latency_ms: dict[str, float] = field(default_factory=dict)
    requests: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary (``project-o demo --json``)."""
        return {"ok": self.ok, "promises": self.promises, "experiments": self.experiments,
                "latency_ms": self.latency_ms, "requests": self.requests,
                "timeline": self.timeline}


class Scenario:
    """One run of the demo against the supervisor in ``stack``."""

    def __init__(self, stack: Stack, narrator: Narrator) -> None:
        self.stack = stack
        self.say = narrator
        self.http = stack.client(timeout=60.0)
        self.facts = demo_facts()
        self.traffic = Traffic(stack.url, stack.token, [s for s, _ in self.facts],
                               UNSEEN_QUERIES)
        self.experiments: list[dict[str, Any]] = []
        self.latency: dict[str, float] = {}
        self.failed_in_validation = 0
        self._shifted_at: float | None = None

    def run(self) -> DemoResult:
        """Play every act; stop early only if the stack itself is unusable."""
        try:
            self._teach()
            self._perceive()
            self.traffic.start()
            self._crashing_candidate()
            self._better_candidate()
            self._regression()
        finally:
            self.traffic.stop()
        self._everything_remembered()
        return self._result()

    # -- acts -----------------------------------------------------------

    def _teach(self) -> None:
        self.say.step(f"teach the agent {len(self.facts)} facts")
        taught = sum(self._ask({"do": "teach", "subject": s, "text": t}) is not None
                     for s, t in self.facts)
        count = (self._ask({"do": "count"}) or {}).get("facts")
        self.say.check("every fact acknowledged (durable in the WAL)",
                       taught == len(self.facts) and count == len(self.facts),
                       f"{taught} taught, the agent counts {count}")

    def _perceive(self) -> None:
        self.say.step("measure the memory search and let the health monitor judge it")
        monitor = HealthMonitor(Thresholds(p95_latency_ms=DEMO_P95_MS,
                                           min_samples=len(self.facts)), autonomy="auto")
        samples, intents = self._measure(), []
        version = self._serving() or "?"
        for sample in samples:
            intents += monitor.observe(version, sample, handler="search_facts")
        self.latency["original"] = statistics.median(samples)
        self.say.note(f"search p50 {statistics.median(samples):.2f} ms over "
                      f"{len(samples)} questions (version {version})")
        self.say.check("perception: the slow search raised an evolution intent", bool(intents),
                       intents[0].hypothesis if intents else "no intent: search not slow enough")

    def _crashing_candidate(self) -> None:
        self.say.step("candidate 1 (recursive search) — proposed by the agent via ctx.evolve")
        begin = time.monotonic()
        experiment = self._watch(self._propose("a recursive search should scan faster",
                                               "recursive"))
        failures = self.traffic.failures(begin, time.monotonic())
        self.say.check("candidate 1 died in the shadow and was rejected",
                       experiment.get("status") == "rejected", _verdict(experiment))
        self.say.check("users saw 0 failures while it crashed", not failures,
                       f"{len(self.traffic.outcomes(begin))} requests, {len(failures)} failed"
                       + _first_error(failures))

    def _better_candidate(self) -> None:
        self.say.step("candidate 2 (lean scan, no per-fact digests) — proposed via ctx.evolve")
        begin = time.monotonic()
        experiment = self._watch(self._propose(
            "search_facts re-hashes every fact for every query; dropping the digest rounds "
            "should cut latency with the same answers", "lean"))
        stages = _stages(experiment)
        self.say.check("candidate 2 promoted through canary 10% → 50% → 100%",
                       experiment.get("status") == "promoted"
                       and all(s in stages for s in CANARY_STAGES),
                       f"stages {' → '.join(stages)}; {_verdict(experiment)}")
        failures = self.traffic.failures(begin, time.monotonic())
        self.say.check("users saw 0 failures during its shadow and canary", not failures,
                       f"{len(self.traffic.outcomes(begin))} requests, {len(failures)} failed"
                       + _first_error(failures))
        self.say.check("candidate 2 now serves", self._serving() == experiment.get(
            "candidate_version"), f"serving {self._serving()}")
        self._compare_answers("candidate 2")
        samples = self._measure()
        self.latency["candidate 2"] = statistics.median(samples)
        before, after = self.latency["original"], self.latency["candidate 2"]
        self.say.check("candidate 2 is measurably faster", after < before,
                       f"search p50 {before:.2f} ms → {after:.2f} ms")

    def _regression(self) -> None:
        self.say.step("candidate 3 (inverted index) — submitted by an operator via POST")
        previous = self._serving()
        body = {"kind": "shadow", "candidate": {"source": candidate_source("indexed")},
                "hypothesis": "an inverted index answers without scanning every fact",
                "validation_requests": VALIDATION_REQUESTS}
        started = self._post_experiment(body)
        experiment = self._watch(started, on_stage=self._shift_traffic)
        rolled_back_at = time.monotonic()
        during = self.traffic.failures(self._shifted_at or rolled_back_at, rolled_back_at)
        self.failed_in_validation = len(during)
        self.say.note(f"{len(during)} user requests failed under candidate 3 before the "
                      "rollback: the price of a regression the canary's traffic could not show")
        self.say.check("candidate 3 passed the canary, failed validation, and was rolled back",
                       experiment.get("status") == "rolled_back"
                       and all(s in _stages(experiment) for s in CANARY_STAGES),
                       _verdict(experiment))
        self.traffic.unseen_share = UNSEEN_SHARE  # the new questions keep coming
        time.sleep(1.0)  # let users keep asking the restored version
        self.say.check("the previous version serves again", self._serving() == previous,
                       f"serving {self._serving()}, before {previous}")
        after = self.traffic.failures(rolled_back_at + 0.2)
        self.say.check("users saw 0 failures after the rollback", not after,
                       f"{len(self.traffic.outcomes(rolled_back_at + 0.2))} requests since, "
                       f"{len(after)} failed" + _first_error(after))

    def _everything_remembered(self) -> None:
        self.say.step("ask about every fact")
        remembered = sum(self._answer(subject) == text for subject, text in self.facts)
        self.say.check("every fact is still remembered", remembered == len(self.facts),
                       f"{remembered}/{len(self.facts)}")

    # -- helpers --------------------------------------------------------

    def _propose(self, hypothesis: str, candidate: str) -> dict[str, Any]:
        """Ask the agent to call ctx.evolve with the candidate's source."""
        answer = self._ask({"do": "improve", "hypothesis": hypothesis,
                            "source": candidate_source(candidate)}) or {}
        self.say.note(f"ctx.evolve → {answer.get('status')} (experiment "
                      f"{answer.get('experiment_id')}) {answer.get('reason') or ''}")
        if not answer.get("experiment_id"):
            raise DemoAborted(f"the agent's ctx.evolve did not start an experiment: {answer}")
        return {"id": answer["experiment_id"]}

    def _post_experiment(self, body: dict[str, Any]) -> dict[str, Any]:
        response = self.http.post("/v1/evolution/experiments", json=body)
        if response.status_code != 201:
            raise DemoAborted(f"POST /v1/evolution/experiments -> {response.status_code}: "
                              f"{response.text[:500]}")
        started: dict[str, Any] = response.json()
        self.say.note(f"POST /v1/evolution/experiments → 201 (experiment {started['id']}, "
                      f"candidate {started.get('candidate_version')})")
        return started

    def _watch(self, started: dict[str, Any],
               on_stage: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """Poll the experiment, narrating each stage, until it is decided."""
        deadline, seen = time.monotonic() + EXPERIMENT_TIMEOUT_S, ""
        while True:
            experiment = self._get(f"/v1/evolution/experiments/{started['id']}")
            stage = f"{experiment.get('stage')} ({experiment.get('status')})"
            if stage != seen:
                seen = stage
                self.say.note(f"experiment {experiment['id'][:8]}: {stage}, samples "
                              f"{experiment.get('samples')}")
                if on_stage is not None:
                    on_stage(experiment)
            if experiment.get("status") != "running":
                self.experiments.append(experiment)
                return experiment
            if time.monotonic() > deadline:
                self.experiments.append(experiment)
                return experiment
            time.sleep(POLL_S)

    def _shift_traffic(self, experiment: dict[str, Any]) -> None:
        if experiment.get("stage") == "validation":
            self._shifted_at = time.monotonic()
            self.traffic.unseen_share = UNSEEN_SHARE
            self.say.note(f"users start asking about things no fact mentions "
                          f"({UNSEEN_SHARE:.0%} of questions)")

    def _compare_answers(self, who: str) -> None:
        wrong = [s for s, text in self.facts if self._answer(s) != text]
        self.say.check(f"{who} gives the same answers", not wrong,
                       f"{len(self.facts) - len(wrong)}/{len(self.facts)} answers unchanged")

    def _measure(self) -> list[float]:
        """Server-side latencies of questions about every fact, with the users paused."""
        self.traffic.pause()
        try:
            return self._measure_quietly()
        finally:
            self.traffic.resume()

    def _measure_quietly(self) -> list[float]:
        time.sleep(QUIET_S)  # let questions in flight finish
        samples = []
        for _ in range(MEASURE_ROUNDS):
            for subject, _text in self.facts:
                response = self.http.post("/v1/requests",
                                          json={"input": {"do": "ask", "query": subject}})
                if response.status_code == 200:
                    samples.append(float(response.json()["latency_ms"]))
        return samples[len(self.facts):]  # the first round warms caches up

    def _answer(self, subject: str) -> Any:
        return (self._ask({"do": "ask", "query": subject}) or {}).get("answer")

    def _ask(self, payload: dict[str, Any]) -> Any:
        response = self.http.post("/v1/requests", json={"input": payload})
        return response.json().get("output") if response.status_code == 200 else None

    def _serving(self) -> str | None:
        return self._get("/v1/status").get("version")

    def _get(self, path: str) -> dict[str, Any]:
        try:
            response = self.http.get(path)
        except httpx.HTTPError as exc:
            raise DemoAborted(f"GET {path} failed: {exc!r}") from exc
        if response.status_code != 200:
            raise DemoAborted(f"GET {path} -> {response.status_code}: {response.text[:500]}")
        result: dict[str, Any] = response.json()
        return result

    def _result(self) -> DemoResult:
        outcomes = self.traffic.outcomes()
        return DemoResult(
            ok=self.say.all_held, promises=[p.to_dict() for p in self.say.promises],
            experiments=[_brief(e) for e in self.experiments], timeline=self.say.lines,
            latency_ms={k: round(v, 3) for k, v in self.latency.items()},
            requests={"user requests": len(outcomes),
                      "failed": sum(not o.ok for o in outcomes),
                      "failed under the regression": self.failed_in_validation},
        )


class DemoAborted(Exception):
    """The scenario cannot go on (the stack refused a step); reported as a broken promise."""


def _stages(experiment: dict[str, Any]) -> list[str]:
    stages = [str(e.get("stage")) for e in experiment.get("timeline", [])]
    return list(dict.fromkeys(stages))


def _verdict(experiment: dict[str, Any]) -> str:
    return f"status {experiment.get('status')}: {experiment.get('reason') or 'no reason'}"


def _first_error(failures: list[Any]) -> str:
    return f" (first: {failures[0].error[:160]})" if failures else ""


def _brief(experiment: dict[str, Any]) -> dict[str, Any]:
    keys = ("id", "kind", "candidate_version", "baseline_version", "stage", "status",
            "decision", "reason", "samples")
    brief = {key: experiment.get(key) for key in keys}
    brief["stages"] = _stages(experiment)
    return brief
