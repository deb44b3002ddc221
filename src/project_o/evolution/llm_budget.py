"""What LLM proposals cost, per model and per run, and when the budget says stop.

::

    Prices   {model: Price(prompt, completion)}   US dollars per million tokens
    Budget   max_cost (USD) and/or max_tokens      None: no limit
    LLMLedger
      record(model, usage, ok) ─► cost = prices.cost(model, usage)  (0.0 when unpriced)
                                  per model: calls, failed, tokens in/out, cost, children
      exhausted()              ─► "cost $0.0123 reached --max-cost $0.01" | None
      state() / load()            the counters, committed with each generation

The budget is checked before a call, never during one: the call that
crosses the limit completes and is counted (its tokens are spent), and no
call starts after it. So a run may end a little over ``max_cost``: by at
most one call. Calls a crash interrupted (made, then lost with their
generation) are counted as ``lost``: money spent, not part of any
committed generation, and still charged against the budget.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from project_o.errors import InvalidArgument
from project_o.llm.client import Usage

__all__ = ["Budget", "LLMLedger", "ModelUsage", "Price", "Prices", "parse_price"]

#: prices are quoted per this many tokens (as the providers' price lists do)
PER_TOKENS = 1_000_000


@dataclass(frozen=True)
class Price:
    """US dollars per million prompt (input) and completion (output) tokens."""

    prompt: float
    completion: float

    def __post_init__(self) -> None:
        for name in ("prompt", "completion"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise InvalidArgument(f"a {name} price must be a finite number >= 0 "
                                      f"(USD per million tokens), got {value!r}")

    def cost(self, usage: Usage) -> float:
        """What ``usage`` cost, in US dollars."""
        return (usage.prompt_tokens * self.prompt
                + usage.completion_tokens * self.completion) / PER_TOKENS


def parse_price(text: str) -> tuple[str, Price]:
    """``"MODEL=PROMPT,COMPLETION"`` (USD per million tokens) -> ``(model, Price)``."""
    model, sep, numbers = text.rpartition("=")
    parts = numbers.split(",")
    try:
        if not sep or not model.strip() or len(parts) != 2:
            raise ValueError
        return model.strip(), Price(float(parts[0]), float(parts[1]))
    except ValueError:
        raise InvalidArgument(
            f"a price is MODEL=PROMPT,COMPLETION in USD per million tokens "
            f"(for example gpt-4o-mini=0.15,0.60), got {text!r}") from None


class Prices:
    """Known prices by model name; a model without one costs nothing (and is named as such)."""

    def __init__(self, prices: Mapping[str, Price] | Iterable[tuple[str, Price]] = ()) -> None:
        self._prices = dict(prices)

    def __contains__(self, model: object) -> bool:
        return model in self._prices

    def __len__(self) -> int:
        return len(self._prices)

    def cost(self, model: str, usage: Usage) -> float:
        """What ``usage`` of ``model`` cost (0.0 when its price is unknown)."""
        price = self._prices.get(model)
        return price.cost(usage) if price is not None else 0.0

    def to_dict(self) -> dict[str, list[float]]:
        """``{model: [prompt, completion]}``, for reports."""
        return {m: [p.prompt, p.completion] for m, p in sorted(self._prices.items())}


@dataclass(frozen=True)
class Budget:
    """Limits on a run's LLM spending; ``None`` means no limit."""

    max_cost: float | None = None
    max_tokens: int | None = None

    def __post_init__(self) -> None:
        if self.max_cost is not None and not (math.isfinite(self.max_cost)
                                              and self.max_cost >= 0):
            raise InvalidArgument(f"--max-cost must be a finite number of USD >= 0, "
                                  f"got {self.max_cost!r}")
        if self.max_tokens is not None and (isinstance(self.max_tokens, bool)
                                            or self.max_tokens < 0):
            raise InvalidArgument(f"--max-tokens must be an int >= 0, got {self.max_tokens!r}")


@dataclass
class ModelUsage:
    """One model's (or the run's) counters."""

    calls: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    children: int = 0

    @property
    def tokens(self) -> int:
        """Prompt + completion tokens."""
        return self.prompt_tokens + self.completion_tokens

    def add(self, other: ModelUsage) -> None:
        """Add ``other``'s counts to these."""
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def minus(self, other: ModelUsage) -> ModelUsage:
        """These counts less ``other``'s, never below zero."""
        return ModelUsage(**{f.name: max(0, getattr(self, f.name) - getattr(other, f.name))
                             for f in fields(self)})

    def to_dict(self) -> dict[str, Any]:
        """The counters plus ``tokens``, rounded for reading."""
        out = asdict(self)
        out["tokens"] = self.tokens
        out["cost"] = round(self.cost, 9)
        return out


class LLMLedger:
    """Per-model usage and cost of one run, against a :class:`Budget`."""

    def __init__(self, prices: Prices | None = None, budget: Budget | None = None) -> None:
        self.prices = prices or Prices()
        self.budget = budget or Budget()
        self._models: dict[str, ModelUsage] = {}
        #: spent on calls whose generation a crash lost (see the module docstring)
        self.lost = ModelUsage()

    def record(self, model: str, usage: Usage, *, ok: bool) -> float:
        """Count one call of ``model``; its cost in USD."""
        cost = self.prices.cost(model, usage)
        entry = self._models.setdefault(model, ModelUsage())
        entry.add(ModelUsage(1, 0 if ok else 1, usage.prompt_tokens, usage.completion_tokens,
                             cost))
        return cost

    def child(self, model: str) -> None:
        """Count a call of ``model`` that gave a child genome."""
        self._models.setdefault(model, ModelUsage()).children += 1

    def per_model(self) -> dict[str, ModelUsage]:
        """The counters of each model used, by name."""
        return dict(sorted(self._models.items()))

    def total(self) -> ModelUsage:
        """The run's committed counters, all models together (``lost`` not included)."""
        total = ModelUsage()
        for entry in self._models.values():
            total.add(entry)
        return total

    def spent(self) -> tuple[float, int]:
        """``(USD, tokens)`` charged against the budget: the total plus what was lost."""
        total = self.total()
        return total.cost + self.lost.cost, total.tokens + self.lost.tokens

    def exhausted(self) -> str | None:
        """Why no further call may start, or ``None`` while the budget allows it."""
        cost, tokens = self.spent()
        if self.budget.max_cost is not None and cost >= self.budget.max_cost:
            return f"LLM cost ${cost:.6f} reached --max-cost ${self.budget.max_cost:g}"
        if self.budget.max_tokens is not None and tokens >= self.budget.max_tokens:
            return f"LLM tokens {tokens} reached --max-tokens {self.budget.max_tokens}"
        return None

    def state(self) -> dict[str, Any]:
        """JSON-able counters for :meth:`load` (``lost`` is recomputed on resume)."""
        return {model: asdict(entry) for model, entry in self.per_model().items()}

    def load(self, state: Mapping[str, Any]) -> None:
        """Continue from :meth:`state`."""
        try:
            self._models = {str(model): ModelUsage(**dict(entry))
                            for model, entry in state.items()}
        except (TypeError, ValueError) as exc:
            raise InvalidArgument(f"not an LLMLedger state ({exc!r}): {state!r:.200}") from exc

    def report(self) -> dict[str, Any]:
        """Per model, the total, what was lost, the budget and the prices: for output."""
        cost, tokens = self.spent()
        return {"models": {m: u.to_dict() for m, u in self.per_model().items()},
                "total": self.total().to_dict(), "lost": self.lost.to_dict(),
                "spent": {"cost": round(cost, 9), "tokens": tokens},
                "budget": asdict(self.budget), "prices": self.prices.to_dict(),
                "exhausted": self.exhausted()}
