"""Red team vs blue team: inputs evolved to break the agent, code evolved to survive them.

::

    round r ┌─ red:  propose inputs (red_team.RedTeam: task seeds + mutation fuzzing)
            │        champion plays them (referee: a match in the evaluators) ── judge each
            │           output: exception │ timeout │ gamed (NaN, ±inf) │ wrong (check())
            │        failing inputs with a new signature ──► findings.jsonl (fsynced)
            │                                                 = the regression suite
            └─ blue: champion fails the suite? one generation of children
                       (operators chosen by an OperatorBandit, donors from the population)
                     every child plays the whole suite + the original task
                     a child that passes strictly more findings without losing original
                     score, or passes all of them with a higher score, becomes champion
    stop:  converged (red found nothing new for K rounds and the champion passes the
           whole suite) │ round budget │ wall-clock budget
    end:   the champion is promoted: its files are written, the summary reports it

This module is the loop; the pieces it ties together live beside it::

    red_team.py     RedTeam.propose ────────── inputs ──┐
    referee.py      open_referee ─► Referee.play/probe ◄┘ ──► a failure (or None) per input
    adversarial.py  run_adversarial ─► rounds: findings (FindingStore), blue breeding,
                                       the champion ─► AdversarialResult

The task file (trusted user code) provides ``evaluate(agent)``,
``check(input, output)``, and seeds for red: ``EXAMPLES`` (a list of inputs),
``generate(rng)`` and/or ``strategy()`` (a hypothesis strategy). Every random
choice comes from one ``random.Random(seed)``: the same seed, the same run.
"""

from __future__ import annotations

import json
import os
import random
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Final

from project_o.errors import InvalidArgument
from project_o.evolution.bandit import OperatorBandit
from project_o.evolution.genome import Genome
from project_o.evolution.operators import Operator, default_operators
from project_o.evolution.red_team import RedTeam, input_key
from project_o.evolution.referee import (
    DEFAULT_INPUT_TIMEOUT_S,
    EvaluatorsFactory,
    Referee,
    load_task_module,
    local_evaluators,
    open_referee,
)
from project_o.evolution.run_records import ROUNDS_FILE, append_line, shown_inputs
from project_o.evolution.validate import validate
from project_o.vault.atomic import fsync_directory

__all__ = [
    "DEFAULT_PATIENCE",
    "FINDINGS_FILE",
    "AdversarialConfig",
    "AdversarialResult",
    "Finding",
    "FindingStore",
    "iter_findings",
    "run_adversarial",
]

#: where findings live, under the vault directory (one JSON object per line)
FINDINGS_FILE: Final = Path("redteam") / "findings.jsonl"
#: rounds without a new finding before red is declared beaten (K)
DEFAULT_PATIENCE: Final = 3
#: new findings kept per round: enough to pin a bug class, few enough to stay a fast suite
MAX_FINDINGS_PER_ROUND: Final = 3
#: operator draws per child before giving up (some operators find no site in some code)
_OPERATOR_TRIES: Final = 12


# -- findings, kept durably ------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """An input the champion failed at the time red found it."""

    input: Any
    kind: str  # exception | timeout | gamed | wrong (judged); crash | memory (a whole match)
    detail: str
    signature: str  # kind plus exception class: what "new" is measured by
    round: int
    blue: str  # the champion's genome id

    @property
    def key(self) -> str:
        """Content id of the input (two findings with equal inputs are one)."""
        return input_key(self.input)

    def to_dict(self) -> dict[str, Any]:
        """The JSON line stored in the findings file."""
        return {"input": self.input, "kind": self.kind, "detail": self.detail,
                "signature": self.signature, "round": self.round, "blue": self.blue}


class FindingStore:
    """``VAULT/redteam/findings.jsonl``: append-only, each line fsynced before it counts."""

    def __init__(self, vault: str | Path) -> None:
        self.vault = Path(vault)
        self.path = self.vault / FINDINGS_FILE

    def load(self) -> list[Finding]:
        """Every stored finding; a torn last line (a crash mid-append) is ignored."""
        if not self.path.exists():
            return []
        findings = []
        for line in self.path.read_text().splitlines():
            try:
                findings.append(Finding(**json.loads(line)))
            except (ValueError, TypeError):
                continue  # only a torn tail can be malformed: appends are whole lines
        return findings

    def append(self, finding: Finding) -> None:
        """Add one finding durably (write, fsync; the directory too when the file is new)."""
        new = not self.path.exists()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(finding.to_dict(), sort_keys=True) + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode())
            os.fsync(fd)  # an fsync error propagates: never retried (see vault.atomic)
        finally:
            os.close(fd)
        if new:
            fsync_directory(self.path.parent)


def iter_findings(vault: str | Path) -> Iterator[Finding]:
    """The findings stored in ``vault``, oldest first."""
    yield from FindingStore(vault).load()


# -- the contest: red and blue rounds ---------------------------------------


@dataclass(frozen=True)
class AdversarialConfig:
    """Knobs of a red/blue run; the defaults suit a small agent on a laptop."""

    rounds: int = 20
    budget_s: float = 600.0
    seed: int = 0
    patience: int = DEFAULT_PATIENCE
    red_inputs: int = 16
    blue_children: int = 8
    blue_population: int = 6
    #: the original evaluate(agent)'s alarm, in each match
    timeout_s: float = 20.0
    #: address space of an evaluator process
    memory_mb: int = 1024
    #: each input's alarm
    input_timeout_s: float = DEFAULT_INPUT_TIMEOUT_S


@dataclass
class AdversarialResult:
    """What a run found and which blue code survived it."""

    seed: Genome
    winner: Genome
    findings: list[Finding]
    passes_all: bool
    winner_score: float
    rounds: int
    stop_reason: str
    history: list[dict[str, Any]]
    winner_path: Path | None = None


@dataclass
class _Member:
    genome: Genome
    passed: int
    score: float

    def key(self) -> tuple[int, float]:
        return self.passed, self.score


def run_adversarial(agent_path: str | Path, task_path: str | Path, *,
                    config: AdversarialConfig = AdversarialConfig(),
                    vault: str | Path | None = None, operators: dict[str, Operator] | None = None,
                    progress: Callable[[dict[str, Any]], None] | None = None,
                    evaluators: EvaluatorsFactory | None = None) -> AdversarialResult:
    """Run red vs blue on the agent at ``agent_path`` until convergence or budget.

    Matches run on ``evaluators`` (default: :func:`local_evaluators`, an
    evaluator pool on this machine). Findings already in ``vault`` are the
    starting regression suite; new ones are appended there as they are
    found, and the winner is written to ``VAULT/redteam/winner/<id>/``.
    """
    task_file = Path(task_path).resolve()
    task = load_task_module(task_file)
    if not callable(getattr(task, "check", None)):
        raise InvalidArgument(f"{task_file} needs check(input, output) -> bool | str for "
                              "adversarial evolution")
    seed = Genome.from_path(agent_path)
    store = FindingStore(vault) if vault is not None else None
    findings = store.load() if store is not None else []
    # A match plays red's proposals or the whole suite, which grows by at most
    # MAX_FINDINGS_PER_ROUND a round: the longest match this run can have.
    most_inputs = max(config.red_inputs, len(findings) + config.rounds * MAX_FINDINGS_PER_ROUND)
    with tempfile.TemporaryDirectory(prefix="project-o-redblue-") as scratch, \
            open_referee(task_file, task, Path(scratch), evaluators or local_evaluators(),
                         timeout_s=config.timeout_s, input_timeout_s=config.input_timeout_s,
                         memory_mb=config.memory_mb, most_inputs=most_inputs) as referee:
        contest = _Contest(seed, task, referee, config, store, findings, operators, progress)
        return contest.run()


class _Contest:
    """One red-vs-blue run: red proposes inputs, the referee judges, blue breeds."""

    def __init__(self, seed: Genome, task: ModuleType, referee: Referee,
                 config: AdversarialConfig, store: FindingStore | None, findings: list[Finding],
                 operators: dict[str, Operator] | None,
                 progress: Callable[[dict[str, Any]], None] | None) -> None:
        self.seed, self.referee, self.config = seed, referee, config
        self.rng = random.Random(config.seed)
        self.store, self.findings = store, list(findings)
        self.red = RedTeam(task, self.rng)
        self.red.remember([f.input for f in self.findings])
        self.operators = operators or default_operators()
        self.bandit = OperatorBandit(sorted(self.operators))
        self.evaluated: set[str] = set()
        self.progress = progress
        self.history: list[dict[str, Any]] = []
        # red's last proposals and how many broke the champion: the round's line on disk
        self.probe: tuple[list[Any], int] = ([], 0)
        self.run_id = f"{seed.id[:12]}-{time.time_ns():x}"

    def run(self) -> AdversarialResult:
        started = time.monotonic()
        self.baseline = self._original_score()
        champion = self._rate([self.seed])[0]
        population, quiet, stop, rounds = [champion], 0, "rounds", 0
        for rounds in range(1, self.config.rounds + 1):
            new = self._red_round(champion.genome, rounds)
            champion = self._rate([champion.genome])[0]
            population = self._refresh(population)
            if champion.passed < len(self.findings):
                champion, population = self._blue_round(champion, population)
            clean = champion.passed == len(self.findings)
            quiet = quiet + 1 if not new and clean else 0
            self._report(rounds, new, champion, time.monotonic() - started)
            if quiet >= self.config.patience:
                stop = "converged"
                break
            if time.monotonic() - started >= self.config.budget_s:
                stop = "budget"
                break
        return self._finish(champion, rounds, stop)

    def _original_score(self) -> float:
        """The seed's score on the original task alone: what blue must not lose."""
        # Alone, not against the stored suite: a finding that crashes the seed's whole
        # match is red's success, not a broken seed.
        [verdict] = self.referee.play([self.seed], [])
        if not verdict.alive:
            failure = verdict.evaluation.failure or {}
            raise InvalidArgument(f"the seed agent {self.seed.id} fails the original task "
                                  f"itself ({failure.get('kind')}: {failure.get('reason')}); "
                                  "fix it before hardening it")
        return verdict.score

    # -- red --------------------------------------------------------------

    def _red_round(self, champion: Genome, round_no: int) -> list[Finding]:
        inputs = self.red.propose(self.config.red_inputs)
        failures = self.referee.probe(champion, inputs)
        self.probe = (inputs, sum(f is not None for f in failures))
        known = {f.key for f in self.findings}
        signatures = {f.signature for f in self.findings}
        new: list[Finding] = []
        for value, failed in zip(inputs, failures):
            if failed is None or input_key(value) in known:
                continue
            kind, detail, signature = failed
            if signature in signatures and new:
                continue  # an old class of bug: one reminder per round is enough
            new.append(Finding(value, kind, detail[:500], signature, round_no, champion.id))
            signatures.add(signature)
            if len(new) >= MAX_FINDINGS_PER_ROUND:
                break
        for finding in new:
            if self.store is not None:
                self.store.append(finding)
            self.findings.append(finding)
        self.red.remember([f.input for f in new] + inputs)
        return new

    # -- blue -------------------------------------------------------------

    def _rate(self, genomes: Sequence[Genome]) -> list[_Member]:
        inputs = [f.input for f in self.findings]
        verdicts = self.referee.play(genomes, inputs)
        self.evaluated.update(g.id for g in genomes)
        return [_Member(g, v.passed, v.score) for g, v in zip(genomes, verdicts)]

    def _refresh(self, population: list[_Member]) -> list[_Member]:
        return self._rate([m.genome for m in population]) if population else population

    def _blue_round(self, champion: _Member, population: list[_Member],
                    ) -> tuple[_Member, list[_Member]]:
        children, ops = self._breed(population)
        if not children:
            return champion, population
        rated = self._rate(children)
        parents = {m.genome.id: m for m in population}
        for member, op in zip(rated, ops):
            parent = parents.get(member.genome.parents[0]) if member.genome.parents else None
            better = parent is not None and member.key() > parent.key()
            self.bandit.record(op, better)
            if self._beats(member, champion):
                champion = member
        pool = {m.genome.id: m for m in [*population, *rated] if m.passed >= 0}
        ranked = sorted(pool.values(), key=lambda m: (m.key(), m.genome.id), reverse=True)
        return champion, ranked[:self.config.blue_population]

    def _beats(self, member: _Member, champion: _Member) -> bool:
        keeps_task = member.score >= self.baseline
        return keeps_task and member.key() > champion.key()

    def _breed(self, population: list[_Member]) -> tuple[list[Genome], list[str]]:
        children: list[Genome] = []
        ops: list[str] = []
        for _ in range(self.config.blue_children * _OPERATOR_TRIES):
            if len(children) >= self.config.blue_children:
                break
            parent = self._tournament(population)
            name = self.bandit.choose(self.rng)
            donors = [m.genome for m in population]
            child = self.operators[name].apply(parent.genome, self.rng, donors=donors)
            if child is None or child.id in self.evaluated or not validate(child):
                continue
            self.evaluated.add(child.id)
            children.append(child)
            ops.append(name)
        return children, ops

    def _tournament(self, population: list[_Member]) -> _Member:
        picks = [self.rng.choice(population) for _ in range(2)]
        return max(picks, key=_Member.key)

    # -- reporting ----------------------------------------------------------

    def _report(self, round_no: int, new: list[Finding], champion: _Member,
                elapsed: float) -> None:
        row = {"round": round_no, "new_findings": len(new), "findings": len(self.findings),
               "champion": champion.genome.id, "passed": champion.passed,
               "score": champion.score, "elapsed_s": round(elapsed, 3),
               "kinds": sorted({f.kind for f in new})}
        self.history.append(row)
        if self.store is not None:
            proposed, broke = self.probe
            append_line(self.store.vault / ROUNDS_FILE, {
                "run": self.run_id, "round": round_no, "proposed": len(proposed),
                "broke": broke, "inputs": shown_inputs(proposed), "new_findings": len(new),
                "suite": len(self.findings), "passed": champion.passed,
                "score": champion.score, "baseline": self.baseline,
                "champion": champion.genome.id})
        if self.progress is not None:
            self.progress(row)

    def _finish(self, champion: _Member, rounds: int, stop: str) -> AdversarialResult:
        path = None
        if self.store is not None:
            home = self.store.vault / "redteam" / "winner" / champion.genome.id
            if not home.exists():
                path = champion.genome.write_to(home)
            else:
                path = home if champion.genome.is_package else home / next(
                    iter(champion.genome.sources))
        return AdversarialResult(
            seed=self.seed, winner=champion.genome, findings=list(self.findings),
            passes_all=champion.passed == len(self.findings), winner_score=champion.score,
            rounds=rounds, stop_reason=stop, history=self.history, winner_path=path)

