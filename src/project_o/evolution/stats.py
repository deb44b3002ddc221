"""Always-valid sequential A/B tests: may be looked at after every sample.

A canary compares a *baseline* arm (the main version) with a *candidate*
arm on one metric (latency, error rate, feedback score). Samples arrive
one at a time and the supervisor's evolution control wants a decision as soon as the data allows,
without the inflated false-positive rate of re-running a fixed-n test
after each sample. This module implements the **mixture sequential
probability ratio test (mSPRT) with a normal mixture**:

* Robbins (1970), "Statistical methods related to the law of the iterated
  logarithm", Ann. Math. Statist. 41(5) — the normal-mixture martingale;
* Johari, Koomen, Pekelis, Walsh (2017), "Peeking at A/B tests: why it
  matters, and what to do about it", KDD — and Johari, Pekelis, Walsh,
  "Always valid inference: continuous monitoring of A/B tests",
  Operations Research 70(3), 2022 — the two-arm mSPRT and always-valid
  p-values;
* Howard, Ramdas, McAuliffe, Sekhon (2021), "Time-uniform, nonparametric,
  nonasymptotic confidence sequences", Ann. Statist. 49(2) — the matching
  confidence sequence and the choice of the mixture's spread.

The statistic. With ``n_b, n_c`` samples, means ``m_b, m_c`` and sample
variances ``s_b², s_c²`` (Welford's running updates), the difference
``d = m_c - m_b`` has variance ``V = s_b²/n_b + s_c²/n_c``. In information
time ``I = 1/V`` the score ``d·I`` behaves like Brownian motion with drift
``θ`` (the true difference), whose likelihood ratio against ``θ = 0``,
mixed over ``θ ~ N(0, τ²)``, is::

    Λ = sqrt(V / (V + τ²)) · exp( τ² d² / (2 V (V + τ²)) )

``Λ`` is a nonnegative martingale under ``θ = 0``, so by Ville's inequality
``P(Λ ever ≥ 1/α) ≤ α``: stopping the first time ``Λ ≥ 1/α`` has type-I
error at most ``α`` however often one looks. The always-valid p-value is
``p = min over looks of 1/Λ``. Inverting the test gives the confidence
sequence reported by :meth:`SequentialTest.summary` (from ``min_samples`` on)::

    d ± sqrt( V (V + τ²) / τ² · (2 log(1/α) + log((V + τ²) / V)) )

``τ`` is set in units of the pooled standard deviation (``τ = tau · s``),
so the test is scale-free. ``tau = 0.4`` makes the boundary tightest near
100 samples per arm at ``α = 0.05`` (minimising the radius above over
``τ²/V`` gives ``τ²/V ≈ 8``; Howard et al. §3.5): effects of half a
standard deviation are decided in well under 100 samples per arm, effects
of a fifth within about 500. Variances are plugged in, which makes the
test asymptotically rather than exactly valid; ``min_samples`` (50 per
arm by default) keeps the plug-in honest. For error rates (``kind="bernoulli"``)
the variance of each arm is ``p̃(1 - p̃)`` with ``p̃ = (errors + ½)/(n + 1)``,
so an arm with no errors yet still has a positive variance.

Decisions: ``"continue"`` until both arms have ``min_samples``; then
``"better"`` / ``"worse"`` the first time ``Λ ≥ 1/α`` (direction from the
sign of ``d`` and ``higher_is_better``); ``"equal"`` once both arms reach
``max_samples`` without that. A decision, once made, stays.

A ``margin`` (relative to the baseline's mean) asks more of ``"better"``:
the whole confidence sequence must lie beyond ``margin · |m_b|`` on the
good side, an always-valid test that the improvement is at least that
large. A difference that is real but small (a fresh process a little
faster than a long-running one) then ends ``"equal"``, not a promotion.
``"worse"`` keeps no margin: any significant harm stops a candidate.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from project_o.errors import InvalidArgument

__all__ = [
    "BASELINE",
    "BETTER",
    "CANDIDATE",
    "CONTINUE",
    "DEFAULT_ALPHA",
    "DEFAULT_MAX_SAMPLES",
    "DEFAULT_MIN_SAMPLES",
    "DEFAULT_TAU",
    "EQUAL",
    "WORSE",
    "SequentialTest",
]

BASELINE, CANDIDATE = "baseline", "candidate"
CONTINUE, BETTER, WORSE, EQUAL = "continue", "better", "worse", "equal"
KINDS = ("mean", "bernoulli")

#: samples per arm before any decision: below it the plug-in variances are unreliable
DEFAULT_MIN_SAMPLES = 50
#: the type-I error: the chance of calling an equal candidate "better" (or "worse")
DEFAULT_ALPHA = 0.05
#: samples per arm after which an undecided test calls the arms equal; twice the
#: 500-per-arm target for clear differences (docs/design.md, "Targets")
DEFAULT_MAX_SAMPLES = 1000
#: mixture spread in pooled standard deviations (tightest near 100 per arm, see above)
DEFAULT_TAU = 0.4

#: smallest variance used, so identical constant samples never divide by zero
_VARIANCE_FLOOR = 1e-12


@dataclass
class _Arm:
    """Welford's running mean and sum of squared deviations."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0

    def add(self, value: float) -> None:
        self.n += 1
        delta = value - self.mean
        self.mean += delta / self.n
        self.m2 += delta * (value - self.mean)

    def variance(self, kind: str) -> float:
        if kind == "bernoulli":
            p = (self.mean * self.n + 0.5) / (self.n + 1)
            return p * (1.0 - p)
        return max(self.m2 / (self.n - 1), _VARIANCE_FLOOR) if self.n > 1 else _VARIANCE_FLOOR


class SequentialTest:
    """An mSPRT comparing a candidate arm with a baseline arm on one metric."""

    def __init__(
        self,
        metric: str = "",
        *,
        kind: str = "mean",
        higher_is_better: bool = True,
        alpha: float = DEFAULT_ALPHA,
        min_samples: int = DEFAULT_MIN_SAMPLES,
        max_samples: int = DEFAULT_MAX_SAMPLES,
        tau: float = DEFAULT_TAU,
        margin: float = 0.0,
    ) -> None:
        _check_config(kind, alpha, min_samples, max_samples, tau)
        if not 0.0 <= margin < 1.0:
            raise InvalidArgument(f"margin is a share of the baseline mean in [0, 1), got {margin}")
        self.margin = margin
        self.metric = metric
        self.kind = kind
        self.higher_is_better = higher_is_better
        self.alpha = alpha
        self.min_samples = min_samples
        self.max_samples = max_samples
        self.tau = tau
        self._arms = {BASELINE: _Arm(), CANDIDATE: _Arm()}
        self._p_value = 1.0
        self._decision = CONTINUE

    def add(self, arm: str, value: float) -> str:
        """Record one sample of ``arm`` (``"baseline"`` or ``"candidate"``); return decision()."""
        if arm not in self._arms:
            raise InvalidArgument(f"arm must be {BASELINE!r} or {CANDIDATE!r}, got {arm!r}")
        self._arms[arm].add(self._check_value(value))
        self._update()
        return self._decision

    def decision(self) -> str:
        """``"continue"``, ``"better"``, ``"worse"`` or ``"equal"`` (for the candidate)."""
        return self._decision

    def summary(self) -> dict[str, Any]:
        """JSON-able statistics: samples, means, difference, confidence sequence, p-value."""
        base, cand = self._arms[BASELINE], self._arms[CANDIDATE]
        ready = min(base.n, cand.n) >= 2
        trusted = min(base.n, cand.n) >= self.min_samples  # the plug-in variances are settled
        return {
            "metric": self.metric, "kind": self.kind, "higher_is_better": self.higher_is_better,
            "alpha": self.alpha, "min_samples": self.min_samples,
            "max_samples": self.max_samples, "tau": self.tau, "margin": self.margin,
            "n": {BASELINE: base.n, CANDIDATE: cand.n},
            "mean": {BASELINE: base.mean, CANDIDATE: cand.mean},
            "sd": {arm: math.sqrt(a.variance(self.kind)) if a.n > 1 else None
                   for arm, a in self._arms.items()},
            "difference": cand.mean - base.mean,
            "log_likelihood_ratio": self._log_lr() if ready else 0.0,
            "threshold": math.log(1.0 / self.alpha),
            "p_value": self._p_value,
            "confidence_sequence": list(self._interval()) if trusted else None,
            "decision": self._decision,
        }

    # -- persistence ----------------------------------------------------

    def state(self) -> dict[str, Any]:
        """Everything needed to resume after a restart (JSON-able)."""
        config = {k: getattr(self, k) for k in ("metric", "kind", "higher_is_better", "alpha",
                                                 "min_samples", "max_samples", "tau", "margin")}
        arms = {name: [a.n, a.mean, a.m2] for name, a in self._arms.items()}
        return {"config": config, "arms": arms, "p_value": self._p_value,
                "decision": self._decision}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> SequentialTest:
        """Rebuild a test saved with :meth:`state`."""
        try:
            test = cls(**state["config"])
            for name, (n, mean, m2) in state["arms"].items():
                test._arms[name] = _Arm(int(n), float(mean), float(m2))
            test._p_value = float(state["p_value"])
            test._decision = str(state["decision"])
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidArgument(f"not a SequentialTest state ({exc!r}): {state!r:.200}") from exc
        return test

    # -- the statistic --------------------------------------------------

    def _check_value(self, value: float) -> float:
        number = float(value)
        if not math.isfinite(number):
            raise InvalidArgument(f"{self.metric or 'sample'} must be finite, got {value!r}")
        if self.kind == "bernoulli" and number not in (0.0, 1.0):
            raise InvalidArgument(f"a bernoulli sample is 0 or 1 (or a bool), got {value!r}")
        return number

    def _update(self) -> None:
        base, cand = self._arms[BASELINE], self._arms[CANDIDATE]
        if self._decision != CONTINUE or min(base.n, cand.n) < self.min_samples:
            return
        log_lr = self._log_lr()
        self._p_value = min(self._p_value, math.exp(-log_lr)) if log_lr > 0 else self._p_value
        if log_lr >= math.log(1.0 / self.alpha):
            up = cand.mean > base.mean
            if up != self.higher_is_better:
                self._decision = WORSE
            elif self._beyond_margin():
                self._decision = BETTER
        if self._decision == CONTINUE and min(base.n, cand.n) >= self.max_samples:
            self._decision = EQUAL

    def _beyond_margin(self) -> bool:
        """Whether the confidence sequence clears ``margin`` of the baseline on the good side."""
        if self.margin == 0.0:
            return True
        low, high = self._interval()
        needed = self.margin * abs(self._arms[BASELINE].mean)
        return low > needed if self.higher_is_better else high < -needed

    def _variances(self) -> tuple[float, float]:
        """(V, τ²): variance of the difference, and the mixture variance in metric units."""
        base, cand = self._arms[BASELINE], self._arms[CANDIDATE]
        vb, vc = base.variance(self.kind), cand.variance(self.kind)
        pooled = (base.n * vb + cand.n * vc) / (base.n + cand.n)
        return vb / base.n + vc / cand.n, (self.tau ** 2) * pooled

    def _log_lr(self) -> float:
        v, tau2 = self._variances()
        d = self._arms[CANDIDATE].mean - self._arms[BASELINE].mean
        return 0.5 * math.log(v / (v + tau2)) + tau2 * d * d / (2.0 * v * (v + tau2))

    def _interval(self) -> tuple[float, float]:
        v, tau2 = self._variances()
        d = self._arms[CANDIDATE].mean - self._arms[BASELINE].mean
        radius = math.sqrt(v * (v + tau2) / tau2
                           * (2.0 * math.log(1.0 / self.alpha) + math.log((v + tau2) / v)))
        return d - radius, d + radius

    def __repr__(self) -> str:
        n = {k: a.n for k, a in self._arms.items()}
        return f"SequentialTest({self.metric!r}, kind={self.kind!r}, n={n}, {self._decision})"


def _check_config(kind: str, alpha: float, min_samples: int, max_samples: int,
                  tau: float) -> None:
    if kind not in KINDS:
        raise InvalidArgument(f"kind must be one of {KINDS}, got {kind!r}")
    if not 0.0 < alpha < 1.0:
        raise InvalidArgument(f"alpha must be in (0, 1), got {alpha!r}")
    if not 2 <= min_samples <= max_samples:
        raise InvalidArgument(
            f"need 2 <= min_samples <= max_samples, got {min_samples} and {max_samples}"
        )
    if not tau > 0:
        raise InvalidArgument(f"tau must be positive, got {tau!r}")
