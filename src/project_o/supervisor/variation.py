"""Variation: the candidate genome an experiment tests, and which operators pay off.

::

    make(spec, baseline) ─► candidate: {"source": ...}   the user's text for the main module
                                       {"files": {...}}   the user's files over the baseline's
                                       params alone       the baseline with other params
                                       {"operator": name} that mutation operator
                                       {"operator": "auto"} the bandit's choices in turn,
                                                            until one applies
    learn(operator, promoted) ─► the bandit's counts ─► VAULT/operators.json (atomic write)

The operator bandit (Thompson sampling, :mod:`project_o.evolution.bandit`)
learns from every finished experiment which operators make candidates
that get promoted; its counts survive restarts beside the catalog.
Randomness comes only from the injected ``rng``.
"""

from __future__ import annotations

import contextlib
import json
import random
from collections.abc import Callable, Mapping
from pathlib import Path

from project_o.errors import CandidateInvalid
from project_o.evolution.bandit import OperatorBandit
from project_o.evolution.genome import Genome
from project_o.evolution.operators import Operator
from project_o.evolution.operators.llm_rewrite import LLMRewrite, RewriteBrief
from project_o.supervisor.experiment import ExperimentSpec
from project_o.vault.atomic import write_atomic

__all__ = ["BANDIT_FILE", "Variation"]

#: the operator bandit's counts, beside the catalog
BANDIT_FILE = "operators.json"

#: the LLM's brief for a hypothesis (built from the supervisor's own records)
BriefSource = Callable[[str], RewriteBrief]


class Variation:
    """Makes candidate genomes (by the user's text or an operator) and learns from verdicts."""

    def __init__(self, operators: Mapping[str, Operator], bandit: OperatorBandit,
                 rng: random.Random, brief: BriefSource, state_file: Path | None = None) -> None:
        self.operators = dict(operators)
        self.bandit, self.rng, self._brief, self._state_file = bandit, rng, brief, state_file

    @classmethod
    def in_vault(cls, vault_path: Path, operators: Mapping[str, Operator], rng: random.Random,
                 brief: BriefSource) -> Variation:
        """The bandit's counts from ``vault_path`` (fresh counts if absent or unreadable)."""
        state_file = vault_path / BANDIT_FILE
        try:
            bandit = OperatorBandit.load(json.loads(state_file.read_text()), names=operators)
        except (OSError, ValueError):
            bandit = OperatorBandit(operators)
        return cls(operators, bandit, rng, brief, state_file)

    def make(self, spec: ExperimentSpec, base: Genome, *,
             author: str = "user") -> tuple[Genome, str]:
        """The candidate genome ``spec`` asks for, and the operator that made it.

        Code given as it is (source, files, params) is credited to ``author``:
        "user" for a person over HTTP, "agent" for the agent's own ctx.evolve.
        """
        params = None if spec.params is None else {**base.params, **spec.params}
        candidate = spec.candidate
        if "source" in candidate:
            name = "__init__.py" if base.is_package else next(iter(base.sources))
            sources = {**base.sources, name: candidate["source"]}
            return base.derive(operator=author, sources=sources, params=params), author
        if "files" in candidate:
            sources = {**base.sources, **candidate["files"]}
            return base.derive(operator=author, sources=sources, params=params), author
        if "operator" not in candidate:
            return base.derive(operator=author, params=params), author
        name = str(candidate["operator"])
        if name != "auto":
            return self._apply(name, base, spec), name
        return self._auto(base, spec)

    def learn(self, operator: str, promoted: bool) -> None:
        """One verdict on a candidate ``operator`` made; persisted at once."""
        if operator not in self.operators:
            return  # a user's candidate: nothing to learn about operators
        self._record(operator, promoted)

    def _auto(self, base: Genome, spec: ExperimentSpec) -> tuple[Genome, str]:
        # The bandit's choices in turn, until one applies to this code
        # (crossover needs donors, statement deletion needs two statements...).
        untried = dict(self.operators)
        while untried:
            name = self.bandit.choose(self.rng, among=untried)
            del untried[name]
            with contextlib.suppress(CandidateInvalid):
                return self._apply(name, base, spec), name
        raise CandidateInvalid("no mutation operator applies to the serving version")

    def _apply(self, name: str, base: Genome, spec: ExperimentSpec) -> Genome:
        operator = self.operators.get(name)
        if operator is None:
            raise CandidateInvalid(f"unknown operator {name!r}; known: {sorted(self.operators)} "
                                   "or 'auto'")
        if isinstance(operator, LLMRewrite):  # tell the model why, and what went wrong lately
            operator = LLMRewrite(operator.client, self._brief(spec.hypothesis or ""))
        child = operator.apply(base, self.rng)
        if child is None:
            self._record(name, False)
            raise CandidateInvalid(f"operator {name} made no candidate: "
                                   f"{getattr(operator, 'last_reason', '')}")
        return child

    def _record(self, operator: str, success: bool) -> None:
        if operator not in self.bandit.names:
            self.bandit.add(operator)
        self.bandit.record(operator, success)
        if self._state_file is not None:
            write_atomic(self._state_file, json.dumps(self.bandit.state()).encode())
