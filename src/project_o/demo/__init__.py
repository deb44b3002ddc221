"""``project-o demo``: the "evolution gone wrong" scenario, offline, in about a minute.

::

    run_demo() ─► Stack: python -m project_o.supervisor --port 0 (temp vault)
                  serving agent.py (a deliberately slow memory search)
              ─► Scenario.run(): teach, perceive, three candidates, remember
                  (scenario.py; candidates in candidates/, spliced by sources.py)
              ─► Narrator: "  0.42s  ✔ ..." lines, a summary table, the lineage tree
              ─► exit 0 only if every promise held

Nothing leaves 127.0.0.1 and nothing needs a network or a model.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from rich.console import Console

from project_o.demo.narrator import Narrator, Promise
from project_o.demo.scenario import DemoAborted, DemoResult, Scenario
from project_o.demo.sources import AGENT_FILE
from project_o.stack import Stack

__all__ = ["DemoResult", "Promise", "run_demo", "run_scenario"]


def run_demo(vault: Path | None = None, *, as_json: bool = False) -> int:
    """Run the scenario and print it; 0 if every promise held, else 1."""
    console = Console(stderr=as_json)
    if vault is not None:
        result = run_scenario(vault, console)
    else:
        with tempfile.TemporaryDirectory(prefix="project-o-demo-") as tmp:
            result = run_scenario(Path(tmp) / "vault", console)
    if as_json:
        print(json.dumps(result.to_dict(), indent=2))
    return 0 if result.ok else 1


def run_scenario(vault: Path, console: Console) -> DemoResult:
    """Start a supervisor on ``vault``, play the scenario, stop everything."""
    narrator = Narrator(console)
    narrator.step(f"start a supervisor serving {AGENT_FILE.name} (vault {vault})")
    with Stack(vault, AGENT_FILE) as stack:
        narrator.note(f"gateway {stack.url}, supervisor pid {stack.supervisor_pid()}")
        scenario = Scenario(stack, narrator)
        try:
            result = scenario.run()
        except DemoAborted as exc:
            narrator.check("the scenario ran to the end", False, str(exc))
            result = scenario._result()
    _print_summary(narrator, result, vault, console)
    return result


def _print_summary(narrator: Narrator, result: DemoResult, vault: Path,
                   console: Console) -> None:
    rows = [{"experiment": e["id"][:8], "candidate": e["candidate_version"],
             "stages": " → ".join(e["stages"]), "status": e["status"],
             "reason": (e.get("reason") or "")[:80]} for e in result.experiments]
    if rows:
        console.print(narrator.summary_table(rows))
    try:
        from project_o.lineage import read_lineage, render_lineage

        render_lineage(read_lineage(vault), console, title="lineage")
    except Exception as exc:  # noqa: BLE001 - the tree is a bonus; the verdict stands without it
        print(f"(lineage unavailable: {exc})", file=sys.stderr)
    held = sum(p["held"] for p in result.promises)
    verdict = "[green]every promise held[/]" if result.ok else "[bold red]a promise broke[/]"
    counts = result.requests
    failed, expected = counts.get("failed", 0), counts.get("failed under the regression", 0)
    where = " (all under the regression, before its rollback)" if failed == expected else ""
    console.print(f"{held}/{len(result.promises)} promises held — {verdict}; "
                  f"{counts.get('user requests', 0)} user requests, {failed} failed{where}; "
                  f"{narrator.elapsed():.1f}s")
