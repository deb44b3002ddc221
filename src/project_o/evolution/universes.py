"""Parallel universes: N mutants of the main agent, each by a different operator, side by side.

::

    main ──op 1──► mutant 1 ─┐
         ──op 2──► mutant 2 ─┼─► EvaluatorPool (same task, isolated) ─► ranked table
         ──op N──► mutant N ─┘        main evaluated alongside, as the bar to beat
                                              │
                 winner (best score, above main) ──► POST /v1/evolution/experiments
                                                     {"kind": "canary", "candidate":
                                                      {"files": sources}}   (with --submit)

Operators are assigned round-robin over the available ones in a random
order; an operator that cannot change this agent hands its universe to the
next one. Ties rank by genome id, so the table is the same for a given seed.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from project_o.errors import InvalidArgument
from project_o.evolution.genome import Genome
from project_o.evolution.operators import Operator, default_operators
from project_o.evolution.task import Evaluation

__all__ = ["EXPERIMENTS_PATH", "Universe", "UniversesResult", "run_universes", "submit_winner"]

#: the protected cycle's entry point (docs/design.md, "HTTP")
EXPERIMENTS_PATH: Final = "/v1/evolution/experiments"
#: how long the supervisor may take to accept an experiment
SUBMIT_TIMEOUT_S: Final = 30.0


@dataclass(frozen=True)
class Universe:
    """One mutant and how it did."""

    operator: str
    genome: Genome
    evaluation: Evaluation


@dataclass(frozen=True)
class UniversesResult:
    """The main's evaluation, every universe ranked best first, and the winner if any beat it."""

    main: Universe
    ranked: list[Universe]
    winner: Universe | None


def run_universes(main: Genome, evaluate: Callable[..., dict[str, Evaluation]], count: int,
                  rng: random.Random, *, operators: Mapping[str, Operator] | None = None,
                  ) -> UniversesResult:
    """Make ``count`` mutants of ``main`` with different operators, evaluate, rank them."""
    if count < 1:
        raise InvalidArgument(f"--universes needs at least 1 universe, got {count}")
    available = [op for name, op in sorted((operators or default_operators()).items())
                 if not name.startswith("cx_")]  # crossover needs a second parent
    order = rng.sample(available, len(available))
    mutants: list[tuple[str, Genome]] = []
    for i in range(count * len(order)):
        if len(mutants) == count:
            break
        operator = order[i % len(order)]
        child = operator.apply(main, rng)
        if child is not None and all(child.id != g.id for _, g in mutants):
            mutants.append((operator.name, child))
    if not mutants:
        raise InvalidArgument("no operator could make a mutant of this agent; give it "
                              "agent.param(...) genes or @agent.evolvable functions")
    results = evaluate([main, *(g for _, g in mutants)])
    base = Universe("main", main, results[main.id])
    ranked = sorted((Universe(name, g, results[g.id]) for name, g in mutants),
                    key=lambda u: (-u.evaluation.fitness, u.genome.id))
    best = ranked[0]
    beats = best.evaluation.ok and best.evaluation.fitness > base.evaluation.fitness
    return UniversesResult(base, ranked, best if beats else None)


def submit_winner(url: str, winner: Genome, *, token: str | None = None) -> dict[str, Any]:
    """Hand ``winner`` to the protected cycle (a canary experiment); the server's answer."""
    import httpx  # here: the supervisor imports this module (its dashboard), never this call

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = {"kind": "canary", "candidate": {"files": dict(winner.sources)}}
    response = httpx.post(url.rstrip("/") + EXPERIMENTS_PATH, json=body, headers=headers,
                          timeout=SUBMIT_TIMEOUT_S)
    if response.status_code >= 400:
        raise InvalidArgument(f"the supervisor at {url} refused the experiment: HTTP "
                              f"{response.status_code} {response.text[:300]}")
    answer: dict[str, Any] = response.json()
    return answer
