"""Several chat models behind one ``chat()``: a bandit picks, a ledger counts, a budget stops.

::

    LLMRewrite ── chat(messages) ──► LLMEnsemble
                                      │ budget spent?      ─► BudgetExhausted (no call made)
                                      │ judge open proposals whose children have a score
                                      │ model = bandit.choose()        (UCB1 with a cost term)
                                      ▼
                          clients[model].complete(messages) ─► Completion(text, usage)
                                      │ ledger.record(model, usage) ─► cost (USD, priced)
                                      ▼
               settle(parent, child | None, outcome)   ─► one llm_calls row in the catalog
                                                          child kept open until it is judged:
                                                          reward 1 if it beat its parent, else 0

As a run extension (:mod:`.extensions`) it joins a
:class:`~project_o.evolution.genetic.GeneticAlgorithm`: its bandit, ledger
and open proposals are committed with every generation and restored on
resume, and ``stop_reason`` ends the run once the budget is spent. Each
call is also written to the catalog's ``llm_calls`` table as it settles,
so what was spent on a generation a crash lost is known: the difference
between that table and the restored ledger, charged to the budget as
``lost``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from project_o.errors import LLMError
from project_o.evolution.extensions import RunContext
from project_o.evolution.llm_budget import LLMLedger, ModelUsage
from project_o.evolution.model_bandit import ModelBandit
from project_o.evolution.run_store import RunStore
from project_o.evolution.task import WORST_FITNESS, Evaluation
from project_o.llm.client import Completion, Usage

__all__ = ["BudgetExhausted", "CallInfo", "CompletionClient", "LLMEnsemble"]

#: characters of a failed call's reason kept in its catalog row
_OUTCOME_CHARS = 300


class BudgetExhausted(LLMError):
    """The run's LLM budget is spent: no further call is made."""


class CompletionClient(Protocol):
    """One model's endpoint (:class:`~project_o.llm.client.LLMClient` fits)."""

    def complete(self, messages: Sequence[Mapping[str, Any]]) -> Completion:
        """The model's answer, with the tokens it spent."""
        ...


@dataclass(frozen=True)
class CallInfo:
    """One call: which model, what it spent, in which generation."""

    model: str
    usage: Usage
    cost: float
    generation: int

    def details(self) -> dict[str, Any]:
        """What a child genome records of the call that made it."""
        return {"model": self.model, "usage": self.usage.to_dict(),
                "cost_usd": round(self.cost, 9)}


class LLMEnsemble:
    """Chat models chosen by a cost-aware bandit, their usage counted (module docstring)."""

    name = "llm"

    def __init__(self, clients: Mapping[str, CompletionClient], *,
                 ledger: LLMLedger | None = None, bandit: ModelBandit | None = None) -> None:
        self.clients = dict(clients)
        self.ledger = ledger or LLMLedger()
        self.bandit = bandit or ModelBandit(self.clients)
        missing = sorted(set(self.bandit.names) - set(self.clients))
        if missing or not self.clients:
            raise LLMError(f"the bandit's models {missing} have no client; give one per model")
        #: the last call whose outcome is not settled yet
        self.last_call: CallInfo | None = None
        self._open: list[list[str]] = []  # [model, parent id, child id], oldest first
        self._run_id = ""
        self._store: RunStore | None = None
        self._lookup: Callable[[str], Evaluation | None] = lambda _id: None
        self._generation = 0

    # -- asking -----------------------------------------------------------

    def chat(self, messages: Sequence[Mapping[str, Any]]) -> str:
        """The reply of the model the bandit picks; raise BudgetExhausted once it is spent."""
        if self.last_call is not None:
            self.settle("", None, "not settled by the caller")
        reason = self.ledger.exhausted()
        if reason is not None:
            raise BudgetExhausted(f"no LLM call made: {reason}")
        self._judge()
        model = self.bandit.choose()
        try:
            completion = self.clients[model].complete(messages)
        except LLMError as exc:
            self._failed(model, exc)
            raise
        cost = self.ledger.record(model, completion.usage, ok=True)
        self.bandit.pulled(model, self._cost_signal(cost, completion.usage))
        self.last_call = CallInfo(model, completion.usage, cost, self._generation)
        return completion.text

    def settle(self, parent_id: str, child_id: str | None, outcome: str) -> None:
        """Say what the last call gave: a child (judged once it is evaluated) or nothing."""
        call, self.last_call = self.last_call, None
        if call is None:
            return
        if child_id is not None and child_id == parent_id:
            child_id, outcome = None, "the edit left the code as it was"
        if child_id is None:
            self.bandit.rewarded(call.model, 0.0)
        else:
            self.ledger.child(call.model)
            self._open.append([call.model, parent_id, child_id])
        self._write(call, parent_id, child_id, outcome)

    def evaluation(self, genome_id: str) -> Evaluation | None:
        """The run's evaluation of ``genome_id`` (once the ensemble has joined a run)."""
        return self._lookup(genome_id)

    def report(self) -> dict[str, Any]:
        """Usage, cost, budget and the bandit's view of each model: for output."""
        return {**self.ledger.report(), "bandit": self.bandit.stats(),
                "open_proposals": len(self._open)}

    # -- as a run extension ---------------------------------------------------

    def begin(self, context: RunContext) -> None:
        """Join a run (started or resumed)."""
        self._run_id, self._store, self._lookup = context.run_id, context.store, \
            context.evaluation
        self._generation = 0
        self._count_lost()

    def snapshot(self, generation: int) -> dict[str, Any]:
        """Bandit, ledger and open proposals after ``generation`` was evaluated."""
        self._judge()
        self._generation = generation + 1
        return {"bandit": self.bandit.state(), "ledger": self.ledger.state(),
                "open": [list(entry) for entry in self._open]}

    def restore(self, generation: int, state: Mapping[str, Any]) -> None:
        """Continue from :meth:`snapshot` of ``generation``."""
        if state:
            self.bandit.load(state["bandit"])
            self.ledger.load(state["ledger"])
            self._open = [list(entry) for entry in state["open"]]
        self._generation = generation + 1
        self._count_lost()

    def stop_reason(self) -> str | None:
        """Why the run should stop: the budget is spent."""
        return self.ledger.exhausted()

    # -- inside -----------------------------------------------------------------

    def _judge(self) -> None:
        """Reward the models whose children have been evaluated since."""
        still_open = []
        for model, parent_id, child_id in self._open:
            child = self._lookup(child_id)
            if child is None:
                still_open.append([model, parent_id, child_id])
                continue
            parent = self._lookup(parent_id)
            before = parent.fitness if parent is not None else WORST_FITNESS
            self.bandit.rewarded(model, 1.0 if child.fitness > before else 0.0)
        self._open = still_open

    def _cost_signal(self, cost: float, usage: Usage) -> float:
        # Without prices the bandit weighs tokens: the best proxy for cost there is.
        return cost if len(self.ledger.prices) else float(usage.total_tokens)

    def _failed(self, model: str, exc: LLMError) -> None:
        self.ledger.record(model, Usage(), ok=False)
        self.bandit.pulled(model, 0.0)
        self.bandit.rewarded(model, 0.0)
        self._write(CallInfo(model, Usage(), 0.0, self._generation), "", None,
                    f"error: {exc}")

    def _write(self, call: CallInfo, parent_id: str, child_id: str | None,
               outcome: str) -> None:
        if self._store is None:
            return
        with self._store.catalog.transaction("record an LLM call", sync=False) as conn:
            conn.execute(
                "INSERT INTO llm_calls (run_id, generation, model, parent_id, version_id,"
                " outcome, prompt_tokens, completion_tokens, cost_usd, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (self._run_id, call.generation, call.model, parent_id, child_id,
                 outcome[:_OUTCOME_CHARS], call.usage.prompt_tokens,
                 call.usage.completion_tokens, call.cost, time.time()))

    def _count_lost(self) -> None:
        """What the catalog says was spent that the restored ledger does not hold."""
        if self._store is None:
            return
        recorded = calls_total(self._store, self._run_id)
        self.ledger.lost = recorded.minus(self.ledger.total())


def calls_total(store: RunStore, run_id: str) -> ModelUsage:
    """Every LLM call recorded in ``store`` for ``run_id``, summed."""
    rows = store.catalog.query(
        "SELECT COUNT(*), COALESCE(SUM(outcome LIKE 'error:%'), 0),"
        " COALESCE(SUM(prompt_tokens), 0), COALESCE(SUM(completion_tokens), 0),"
        " COALESCE(SUM(cost_usd), 0.0), COUNT(version_id) FROM llm_calls WHERE run_id = ?",
        (run_id,))
    calls, failed, prompt, completion, cost, children = rows[0]
    return ModelUsage(int(calls), int(failed), int(prompt), int(completion), float(cost),
                      int(children))
