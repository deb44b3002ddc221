"""``project-o evolve --adversarial --agent A --task T``: the red/blue loop from the shell.

::

    project-o evolve --adversarial --agent A --task T [--rounds N] [--budget S] [--seed N]
                     [--vault DIR] [--backend local|ray] [--address ADDR] [--json]

Matches run on the genetic algorithm's evaluators: an evaluator pool here
(``--backend local``), or the same pools spread over a Ray cluster
(``--backend ray``; ``--address`` joins one, else a local one is started on
127.0.0.1). One line per round (findings, champion, score), then the
summary: why it stopped, the findings, the winner and its diff against the
seed. Findings and the winner's files go under ``VAULT/redteam/``. Exit
status 0 when the winner passes every finding, 1 when it does not, 2 on bad
arguments.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from project_o.errors import ProjectOError
from project_o.evolution.adversarial import AdversarialConfig, AdversarialResult, run_adversarial
from project_o.evolution.referee import EvaluatorsFactory, local_evaluators, ray_evaluators

__all__ = ["add_arguments", "main", "summary"]

_DEFAULTS = AdversarialConfig()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the adversarial options (``--agent`` and ``--task`` included) to ``parser``."""
    parser.add_argument("--adversarial", action="store_true",
                        help="red team vs blue team instead of the genetic algorithm")
    parser.add_argument("--agent", required=True, help="agent .py file or package directory")
    parser.add_argument("--task", required=True,
                        help="task file with evaluate(agent) and check(input, output)")
    parser.add_argument("--rounds", type=int, default=_DEFAULTS.rounds)
    parser.add_argument("--budget", type=float, default=_DEFAULTS.budget_s,
                        help="wall-clock seconds before stopping (default %(default)s)")
    parser.add_argument("--seed", type=int, default=_DEFAULTS.seed)
    parser.add_argument("--patience", type=int, default=_DEFAULTS.patience,
                        help="rounds without a new finding that mean convergence")
    parser.add_argument("--vault", default=".project-o",
                        help="vault directory for findings and the winner (default %(default)s)")
    parser.add_argument("--backend", choices=("local", "ray"), default="local",
                        help="where matches run: here, or on a Ray cluster")
    parser.add_argument("--address", default=None,
                        help="Ray cluster address (default: start a local one on 127.0.0.1)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def main(args: argparse.Namespace) -> int:
    """Run the loop described by ``args``; return the exit status."""
    config = AdversarialConfig(rounds=args.rounds, budget_s=args.budget, seed=args.seed,
                               patience=args.patience)
    progress = None if args.json else _print_round
    try:
        result = run_adversarial(args.agent, args.task, config=config, vault=args.vault,
                                 progress=progress, evaluators=_evaluators(args))
    except (ProjectOError, OSError) as exc:
        print(f"project-o evolve --adversarial: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(summary(result), indent=2, default=str))
    else:
        _print_summary(result)
    return 0 if result.passes_all else 1


def _evaluators(args: argparse.Namespace) -> EvaluatorsFactory:
    return ray_evaluators(args.address) if args.backend == "ray" else local_evaluators()


def summary(result: AdversarialResult) -> dict[str, Any]:
    """The result as plain data (``--json``)."""
    return {"stop_reason": result.stop_reason, "rounds": result.rounds,
            "seed": result.seed.id, "winner": result.winner.id,
            "passes_all_findings": result.passes_all, "winner_score": result.winner_score,
            "winner_path": str(result.winner_path) if result.winner_path else None,
            "findings": [f.to_dict() for f in result.findings], "history": result.history,
            "diff": result.seed.diff(result.winner)}


def _print_round(row: dict[str, Any]) -> None:
    kinds = ",".join(row["kinds"]) or "-"
    print(f"round {row['round']:>3}  new findings {row['new_findings']:>2} ({kinds:<20}) "
          f"suite {row['findings']:>3}  champion {row['champion']} passes {row['passed']:>3}  "
          f"score {row['score']:.3f}  {row['elapsed_s']:.1f}s", flush=True)


def _print_summary(result: AdversarialResult) -> None:
    print(f"\nstopped: {result.stop_reason} after {result.rounds} round(s)")
    print(f"findings: {len(result.findings)}")
    for finding in result.findings:
        print(f"  [{finding.kind}] {finding.input!r:.60}  {finding.detail:.70}")
    verdict = "passes every finding" if result.passes_all else "still fails some findings"
    print(f"winner: {result.winner.id} ({verdict}, task score {result.winner_score:.3f})")
    if result.winner_path is not None:
        print(f"written to: {Path(result.winner_path)}")
    diff = result.seed.diff(result.winner)
    print(diff if diff else "(the winner is the seed: nothing needed fixing)")
