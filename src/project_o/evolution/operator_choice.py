"""Which operator the genetic algorithm tries next, and what it learns from the children.

::

    order(operators, rng) ─► a random order (rng.sample), or with the bandit its
                             choices in turn among the operators not tried yet
    made(child)           ─► remembered, with its lineage, until the generation ends
    learn(new, results)   ─► per evaluated child: did it beat its nearest evaluated
                             ancestor (along first parents)? every operator between
                             them is credited (a crossover, then a mutation: both)

Lineage is read from the generation's own children only: the same content
made in an earlier generation may have come another way, and a resumed
run has not seen that one, so reading it would make resume inexact.
Comparisons use :attr:`Evaluation.merit` (cascade stage, then score).
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from project_o.evolution.bandit import OperatorBandit
from project_o.evolution.genome import Genome
from project_o.evolution.operators import Operator
from project_o.evolution.task import Evaluation

__all__ = ["OperatorChoice"]


class OperatorChoice:
    """Random operator order, or Thompson sampling over ``names`` when ``bandit``."""

    def __init__(self, names: Sequence[str], *, bandit: bool) -> None:
        self.bandit = OperatorBandit(names) if bandit else None
        self._born: dict[str, Genome] = {}

    def order(self, operators: Sequence[Operator], rng: random.Random) -> Iterator[Operator]:
        """The operators in the order to try them, until one applies."""
        if self.bandit is None:
            yield from rng.sample(list(operators), len(operators))
            return
        untried = {op.name: op for op in operators}
        while untried:
            yield untried.pop(self.bandit.choose(rng, among=untried))

    def made(self, child: Genome) -> None:
        """Remember a child made this generation (the first of equal content wins)."""
        self._born.setdefault(child.id, child)

    def learn(self, new: Sequence[Genome], results: Mapping[str, Evaluation]) -> None:
        """Credit the operators behind each newly evaluated genome; end the generation."""
        if self.bandit is not None:
            for genome in new:
                self._reward(self.bandit, genome, results)
        self._born.clear()

    def _reward(self, bandit: OperatorBandit, genome: Genome,
                results: Mapping[str, Evaluation]) -> None:
        operators, current = [genome.operator], genome
        while current.parents and current.parents[0] not in results:
            intermediate = self._born.get(current.parents[0])
            if intermediate is None:
                return
            operators.append(intermediate.operator)
            current = intermediate
        if not current.parents:
            return  # the seed
        better = results[genome.id].merit > results[current.parents[0]].merit
        for name in operators:
            if name in bandit.names:  # an arm added later would change the draws' order
                bandit.record(name, better)

    def state(self) -> dict[str, Any] | None:
        """The bandit's counts (JSON-able), or ``None`` without a bandit."""
        return None if self.bandit is None else self.bandit.state()

    def restore(self, state: Mapping[str, Any] | None) -> None:
        """Continue from :meth:`state` (a resumed run)."""
        if self.bandit is not None and state is not None:
            self.bandit = OperatorBandit.load(state, names=self.bandit.names)
