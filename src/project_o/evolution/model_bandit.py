"""Which chat model writes the next LLM proposal: UCB1 with a cost term.

::

    choose()                   an arm never pulled first (in the order given), else
                               argmax_i  mean_i + c·sqrt(ln N / n_i) − w·cost_i / max_j cost_j
    pulled(name, cost)         n_i += 1, spent_i += cost            (when the call is made)
    rewarded(name, reward)     rewards_i += reward, judged_i += 1  (when its child is judged)

``mean_i`` is the average reward over the proposals already judged (1.0,
optimistic, while none is); ``n_i`` counts every pull, judged or not, so a
model whose children are still being evaluated is not drawn again and again
meanwhile. ``cost_i`` is the model's average cost per call — US dollars when
prices are known, tokens otherwise — divided by the dearest model's, so
``w`` (``cost_weight``) says how many units of reward (one unit: "the child
beat its parent") the dearest model must earn over the cheapest to be
preferred. ``c`` is UCB1's exploration constant (Auer, Cesa-Bianchi &
Fischer, 2002, "Finite-time analysis of the multiarmed bandit problem",
Machine Learning 47; their bound uses sqrt(2 ln N / n), i.e. c = sqrt 2).

There is no randomness: the same outcomes give the same choices, so a run
with a deterministic model server is reproducible, and :meth:`state` /
:meth:`load` carry the counts across a resume.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from project_o.errors import InvalidArgument

__all__ = ["DEFAULT_COST_WEIGHT", "DEFAULT_EXPLORATION", "ArmStats", "ModelBandit"]

#: UCB1's constant, sqrt(2) (Auer et al., 2002)
DEFAULT_EXPLORATION: Final = math.sqrt(2.0)
#: the dearest model must win half a reward unit more often to be preferred
DEFAULT_COST_WEIGHT: Final = 0.5
#: the mean reward assumed for a model none of whose proposals has been judged yet
_OPTIMISTIC_MEAN: Final = 1.0


@dataclass
class ArmStats:
    """One model's counts."""

    pulls: int = 0
    judged: int = 0
    rewards: float = 0.0
    spent: float = 0.0

    @property
    def mean_reward(self) -> float:
        """Average reward of the judged proposals (optimistic while none is)."""
        return self.rewards / self.judged if self.judged else _OPTIMISTIC_MEAN

    @property
    def mean_cost(self) -> float:
        """Average cost of one call."""
        return self.spent / self.pulls if self.pulls else 0.0


class ModelBandit:
    """UCB1 over named models, penalised by their cost (see the module docstring)."""

    def __init__(self, names: Iterable[str], *, exploration: float = DEFAULT_EXPLORATION,
                 cost_weight: float = DEFAULT_COST_WEIGHT) -> None:
        self._arms = {name: ArmStats() for name in dict.fromkeys(names)}
        if not self._arms:
            raise InvalidArgument("a model bandit needs at least one model name")
        if not (math.isfinite(exploration) and exploration >= 0):
            raise InvalidArgument(f"exploration must be a finite number >= 0, got {exploration}")
        if not (math.isfinite(cost_weight) and cost_weight >= 0):
            raise InvalidArgument(f"cost_weight must be a finite number >= 0, got {cost_weight}")
        self.exploration = float(exploration)
        self.cost_weight = float(cost_weight)

    @property
    def names(self) -> list[str]:
        """The models, in the order ties are broken."""
        return list(self._arms)

    def choose(self) -> str:
        """The model to ask next."""
        for name, arm in self._arms.items():
            if arm.pulls == 0:
                return name
        scores = self.scores()
        return max(self._arms, key=scores.__getitem__)  # first of equals

    def scores(self) -> dict[str, float]:
        """Each model's current UCB score, cost term included (all pulled at least once)."""
        total = sum(arm.pulls for arm in self._arms.values())
        dearest = max(arm.mean_cost for arm in self._arms.values())
        out = {}
        for name, arm in self._arms.items():
            bonus = self.exploration * math.sqrt(math.log(total) / arm.pulls) \
                if arm.pulls else math.inf
            penalty = self.cost_weight * arm.mean_cost / dearest if dearest > 0 else 0.0
            out[name] = arm.mean_reward + bonus - penalty
        return out

    def pulled(self, name: str, cost: float) -> None:
        """Count one call of ``name`` that cost ``cost``."""
        arm = self._arm(name)
        arm.pulls += 1
        arm.spent += max(0.0, float(cost))

    def rewarded(self, name: str, reward: float) -> None:
        """Count the judgement of one of ``name``'s proposals (reward in [0, 1])."""
        arm = self._arm(name)
        arm.judged += 1
        arm.rewards += min(1.0, max(0.0, float(reward)))

    def stats(self) -> dict[str, dict[str, float]]:
        """Per model: pulls, judged, rewards, spent, mean reward and mean cost."""
        return {name: {"pulls": arm.pulls, "judged": arm.judged, "rewards": arm.rewards,
                       "spent": arm.spent, "mean_reward": arm.mean_reward,
                       "mean_cost": arm.mean_cost}
                for name, arm in self._arms.items()}

    def state(self) -> dict[str, Any]:
        """JSON-able state for :meth:`load`."""
        return {"exploration": self.exploration, "cost_weight": self.cost_weight,
                "arms": {name: [arm.pulls, arm.judged, arm.rewards, arm.spent]
                         for name, arm in self._arms.items()}}

    def load(self, state: Mapping[str, Any]) -> None:
        """Take the counts of :meth:`state` for the models known here (new ones start fresh)."""
        try:
            for name, (pulls, judged, rewards, spent) in dict(state["arms"]).items():
                if name in self._arms:
                    self._arms[name] = ArmStats(int(pulls), int(judged), float(rewards),
                                                float(spent))
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidArgument(f"not a ModelBandit state ({exc!r}): {state!r:.200}") from exc

    def _arm(self, name: str) -> ArmStats:
        arm = self._arms.get(name)
        if arm is None:
            raise InvalidArgument(f"unknown model {name!r}; the bandit knows {self.names}")
        return arm
