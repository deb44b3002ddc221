"""Which mutation operator to try next: Thompson sampling over their success rates.

::

    record(name, success) ─► arm(name).successes / failures += 1
    choose(rng)           ─► for each arm draw θ ~ Beta(prior_a + successes, prior_b + failures)
                             return the arm with the largest θ (first in order on a tie)

An operator that keeps producing candidates that get promoted (or score
better) is drawn more and more often, while one that rarely helps is still
tried now and then: its Beta stays wide until it has been tried enough to
be sure. (Thompson, 1933, "On the likelihood that one unknown probability
exceeds another", Biometrika 25; Chapelle & Li, 2011, "An empirical
evaluation of Thompson sampling", NeurIPS.)

``decay`` < 1 forgets old outcomes geometrically (counts shrink at each
record), for when what works changes as the agent evolves. Randomness comes
only from the ``rng`` passed to :meth:`OperatorBandit.choose`, so a seeded
run is reproducible; :meth:`OperatorBandit.state` /
:meth:`OperatorBandit.load` keep the counts across restarts.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from typing import Any

from project_o.errors import InvalidArgument

__all__ = ["DEFAULT_PRIOR", "OperatorBandit"]

#: Beta(1, 1): uniform, every operator starts as likely to help as not
DEFAULT_PRIOR = (1.0, 1.0)


class OperatorBandit:
    """Thompson sampling with Beta priors over named arms (operators)."""

    def __init__(
        self,
        names: Iterable[str],
        *,
        prior: tuple[float, float] = DEFAULT_PRIOR,
        decay: float = 1.0,
    ) -> None:
        self._names = list(dict.fromkeys(names))
        if not self._names:
            raise InvalidArgument("a bandit needs at least one operator name")
        if not (prior[0] > 0 and prior[1] > 0):
            raise InvalidArgument(f"Beta prior parameters must be positive, got {prior!r}")
        if not 0.0 < decay <= 1.0:
            raise InvalidArgument(f"decay must be in (0, 1], got {decay!r}")
        self.prior = (float(prior[0]), float(prior[1]))
        self.decay = decay
        self._counts = {name: [0.0, 0.0] for name in self._names}

    @property
    def names(self) -> list[str]:
        """The arms, in the order ties are broken."""
        return list(self._names)

    def add(self, name: str) -> None:
        """Add an arm (a newly available operator) with no history; no-op if known."""
        if name not in self._counts:
            self._names.append(name)
            self._counts[name] = [0.0, 0.0]

    def choose(self, rng: random.Random, *, among: Iterable[str] | None = None) -> str:
        """The arm to try next (optionally only ``among`` some arms)."""
        wanted = None if among is None else set(among)
        names = [n for n in self._names if wanted is None or n in wanted]
        if not names:
            raise InvalidArgument(f"none of {sorted(wanted or ())} is an arm of this bandit "
                                  f"({self._names})")
        a, b = self.prior
        draws = [rng.betavariate(a + self._counts[n][0], b + self._counts[n][1]) for n in names]
        return names[max(range(len(names)), key=draws.__getitem__)]

    def record(self, name: str, success: bool) -> None:
        """Count one outcome of ``name``'s candidate."""
        if name not in self._counts:
            raise InvalidArgument(
                f"unknown operator {name!r}; known: {self._names} (add() it first)"
            )
        if self.decay < 1.0:
            for counts in self._counts.values():
                counts[0] *= self.decay
                counts[1] *= self.decay
        self._counts[name][0 if success else 1] += 1.0

    def stats(self) -> dict[str, dict[str, float]]:
        """Per arm: successes, failures and the posterior mean success rate."""
        a, b = self.prior
        return {n: {"successes": s, "failures": f, "mean": (a + s) / (a + b + s + f)}
                for n, (s, f) in self._counts.items()}

    def state(self) -> dict[str, Any]:
        """JSON-able state for :meth:`load`."""
        return {"prior": list(self.prior), "decay": self.decay,
                "arms": {n: list(self._counts[n]) for n in self._names}}

    @classmethod
    def load(cls, state: Mapping[str, Any], *, names: Iterable[str] = ()) -> OperatorBandit:
        """Rebuild from :meth:`state`; ``names`` adds arms that are new since it was saved."""
        try:
            arms = dict(state["arms"])
            a, b = state["prior"]
            bandit = cls([*arms, *names], prior=(float(a), float(b)), decay=float(state["decay"]))
            for name, (successes, failures) in arms.items():
                bandit._counts[name] = [float(successes), float(failures)]
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidArgument(f"not an OperatorBandit state ({exc!r}): {state!r:.200}") from exc
        return bandit
