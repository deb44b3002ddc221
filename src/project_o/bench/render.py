"""Print a benchmark report as tables."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from project_o.bench.report import Report

__all__ = ["render"]


def render(report: Report, console: Console | None = None) -> None:
    """Print the rows and targets of ``report``."""
    console = console or Console()
    title = f"bench {report.name}{' (quick)' if report.quick else ''} — {report.measured_at}"
    if report.rows:
        table = Table(title=title)
        columns = list(dict.fromkeys(key for row in report.rows for key in row))
        for column in columns:
            table.add_column(column)
        for row in report.rows:
            table.add_row(*(_cell(row.get(column)) for column in columns))
        console.print(table)
    if report.targets:
        targets = Table(title="targets")
        for column in ("target", "measured", "goal", "met"):
            targets.add_column(column)
        for t in report.targets:
            mark = "[green]yes[/]" if t.met else "[red]no[/]"
            targets.add_row(t.name, _cell(t.measured), t.goal, mark)
        console.print(targets)
    for note in report.notes:
        console.print(f"note: {note}")


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 100 else f"{value:,.0f}"
    return "" if value is None else str(value)
