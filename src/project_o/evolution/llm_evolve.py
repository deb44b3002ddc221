"""``project-o evolve --llm-model M ...``: LLM proposals in a GA run, from a terminal.

::

    --llm-model a --llm-model b      one LLMClient per model (endpoint: --llm-base-url, else
                                     PROJECT_O_LLM_BASE_URL / OPENAI_BASE_URL, or its own as
                                     NAME@URL; the key from PROJECT_O_LLM_API_KEY / OPENAI_API_KEY)
    --llm-price a=0.15,0.60          USD per million prompt, completion tokens
    --llm-cost-weight W              how much the bandit shies away from the dearer model
    --max-cost USD / --max-tokens N  no call after the budget is spent; the generation whose
                                     proposals are made is evaluated, then the run stops
    --llm-only                       mutations by the LLM only (cx_* crossovers stay)
          │ build_ensemble(args)
          ▼
    LLMEnsemble ─► LLMRewrite(ensemble, evaluations=...)  in the GA's operators
                └► GeneticAlgorithm(extensions=[ensemble])
    output: a line per generation (calls, tokens, cost, per model), a table per model at
            the end, "llm" in --json (with per-generation rows from the catalog)
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.table import Table

from project_o.errors import InvalidArgument
from project_o.evolution.genetic import GenerationStats, Reporter
from project_o.evolution.llm_budget import Budget, LLMLedger, Prices, parse_price
from project_o.evolution.llm_ensemble import LLMEnsemble
from project_o.evolution.model_bandit import DEFAULT_COST_WEIGHT, ModelBandit
from project_o.evolution.operators import LLMRewrite, Operator, default_operators
from project_o.evolution.run_store import RunStore
from project_o.llm.client import LLMClient
from project_o.llm.config import LLMConfig

__all__ = ["LLMReporter", "add_llm_arguments", "build_ensemble", "llm_json", "llm_operators",
           "print_llm_summary"]


def add_llm_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the LLM options of ``evolve`` to ``parser``."""
    llm = parser.add_argument_group("LLM proposals (an OpenAI-compatible endpoint)")
    llm.add_argument("--llm-model", action="append", default=[], metavar="NAME",
                     help="a chat model that proposes edits (NAME or NAME@BASE_URL); repeat "
                          "for several: a bandit picks among them, weighing cost")
    llm.add_argument("--llm-base-url", default=None,
                     help="the endpoint (default: PROJECT_O_LLM_BASE_URL, else the OpenAI API)")
    llm.add_argument("--llm-price", action="append", default=[], metavar="MODEL=IN,OUT",
                     help="USD per million prompt and completion tokens; repeat per model")
    llm.add_argument("--llm-cost-weight", type=float, default=DEFAULT_COST_WEIGHT,
                     help="reward the dearest model must earn over the cheapest to be chosen")
    llm.add_argument("--llm-only", action="store_true",
                     help="only the LLM mutates (cx_functions and cx_params still cross)")
    llm.add_argument("--max-cost", type=float, default=None, metavar="USD",
                     help="stop proposing once the LLM calls cost this much")
    llm.add_argument("--max-tokens", type=int, default=None, metavar="N",
                     help="stop proposing once the LLM calls used this many tokens")


def build_ensemble(args: argparse.Namespace,
                   env: Mapping[str, str] | None = None) -> LLMEnsemble | None:
    """The ensemble ``args`` ask for, or None without ``--llm-model``; bad input raises."""
    endpoints = dict(_endpoint(text) for text in args.llm_model)
    models = list(endpoints)
    limited = args.max_cost is not None or args.max_tokens is not None
    if not models:
        if limited:
            raise InvalidArgument("--max-cost / --max-tokens limit LLM proposals; "
                                  "name the models with --llm-model")
        return None
    prices = Prices(parse_price(text) for text in args.llm_price)
    unpriced = [m for m in models if m not in prices]
    if args.max_cost is not None and unpriced:
        raise InvalidArgument(f"--max-cost needs a price for every model; none for {unpriced}: "
                              "add --llm-price MODEL=PROMPT,COMPLETION (USD per million tokens)")
    base = LLMConfig.from_env(env) or LLMConfig()
    clients = {}
    for model in models:
        config = LLMConfig(**{**base.to_dict(), "model": model, "base_url":
                              endpoints[model] or args.llm_base_url or base.base_url})
        clients[model] = LLMClient(config)
    ledger = LLMLedger(prices, Budget(args.max_cost, args.max_tokens))
    bandit = ModelBandit(models, cost_weight=args.llm_cost_weight)
    return LLMEnsemble(clients, ledger=ledger, bandit=bandit)


def _endpoint(text: str) -> tuple[str, str | None]:
    """``NAME`` or ``NAME@http(s)://...`` -> ``(name, base URL or None)``."""
    name, at, url = text.rpartition("@")
    if at and url.startswith(("http://", "https://")) and name.strip():
        return name.strip(), url
    return text.strip(), None


def llm_operators(ensemble: LLMEnsemble, *, only: bool = False) -> dict[str, Operator]:
    """The GA's operators with ``llm_rewrite`` added (with ``only``: it and the crossovers)."""
    operators = default_operators()
    if only:
        # mut_ast_donor also mutates without a mate (from the parent's other functions): out.
        operators = {name: op for name, op in operators.items() if name.startswith("cx_")}
    operators[LLMRewrite.name] = LLMRewrite(ensemble, evaluations=ensemble.evaluation)
    return operators


class LLMReporter:
    """Passes the GA's reports on, adding a line of LLM usage per generation."""

    def __init__(self, inner: Reporter, ensemble: LLMEnsemble, console: Console) -> None:
        self.inner, self.ensemble, self.console = inner, ensemble, console

    def on_progress(self, generation: int, done: int, total: int) -> None:
        self.inner.on_progress(generation, done, total)

    def on_generation(self, stats: GenerationStats) -> None:
        self.inner.on_generation(stats)
        total = self.ensemble.ledger.total()
        models = ", ".join(f"{m} {u.calls}" for m, u in self.ensemble.ledger.per_model().items())
        self.console.print(
            f"        llm  calls {total.calls:>4}  children {total.children:>4}  tokens "
            f"{total.tokens:>8}  cost ${total.cost:.6f}  ({models or 'no calls yet'})",
            markup=False, highlight=False)


def llm_json(ensemble: LLMEnsemble, store: RunStore | None, run_id: str) -> dict[str, Any]:
    """The ``llm`` section of ``evolve --json``: usage, bandit, budget, per generation."""
    report = ensemble.report()
    if store is not None:
        rows = store.catalog.query(
            "SELECT generation, model, COUNT(*), SUM(prompt_tokens), SUM(completion_tokens),"
            " SUM(cost_usd), COUNT(version_id) FROM llm_calls WHERE run_id = ?"
            " GROUP BY generation, model ORDER BY generation, model", (run_id,))
        report["per_generation"] = [
            {"generation": g, "model": m, "calls": c, "prompt_tokens": p,
             "completion_tokens": o, "cost": round(cost, 9), "children": k}
            for g, m, c, p, o, cost, k in rows]
    return report


def print_llm_summary(console: Console, ensemble: LLMEnsemble, report: Mapping[str, Any],
                      stopped: str) -> None:
    """Tables per generation and per model (calls, children, tokens, cost), then the totals."""
    _print_generations(console, report.get("per_generation", []))
    table = Table(title="LLM proposals per model")
    for column in ("model", "calls", "failed", "children", "improved", "tokens in",
                   "tokens out", "cost USD"):
        table.add_column(column, justify="right")
    bandit = ensemble.bandit.stats()
    for model, usage in ensemble.ledger.per_model().items():
        table.add_row(model, str(usage.calls), str(usage.failed), str(usage.children),
                      f"{bandit.get(model, {}).get('rewards', 0):g}", str(usage.prompt_tokens),
                      str(usage.completion_tokens), f"{usage.cost:.6f}")
    console.print(table)
    cost, tokens = ensemble.ledger.spent()
    lost = ensemble.ledger.lost
    note = f" (of which lost to an interruption: {lost.calls} calls, ${lost.cost:.6f})" \
        if lost.calls else ""
    console.print(f"LLM spent: ${cost:.6f}, {tokens} tokens{note}", markup=False)
    if stopped:
        console.print(f"[yellow]stopped early: {stopped}[/yellow]")


def _print_generations(console: Console, rows: list[dict[str, Any]]) -> None:
    by_generation: dict[int, list[float]] = {}
    for row in rows:
        sums = by_generation.setdefault(row["generation"], [0, 0, 0, 0.0])
        for i, key in enumerate(("calls", "children")):
            sums[i] += row[key]
        sums[2] += row["prompt_tokens"] + row["completion_tokens"]
        sums[3] += row["cost"]
    if not by_generation:
        return
    # Every call made, those of a generation a crash lost included.
    table = Table(title="LLM calls per generation")
    for column in ("gen", "calls", "children", "tokens", "cost USD"):
        table.add_column(column, justify="right")
    for generation, (calls, children, tokens, cost) in sorted(by_generation.items()):
        table.add_row(str(generation), f"{calls:g}", f"{children:g}", f"{tokens:g}",
                      f"{cost:.6f}")
    console.print(table)
