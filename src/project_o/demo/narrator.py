"""The demo's voice: a timeline of steps and checked promises, with timings.

::

      0.42s  → teach the agent 30 facts
      1.87s  ✔ every fact acknowledged (30/30)
     12.03s  ✘ candidate 2 was promoted — status rejected: ...

A :class:`Promise` is one check the scenario makes; the demo exits 0 only
if every promise held. In ``--json`` mode the narration goes to stderr so
stdout carries only the JSON summary.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table

__all__ = ["Narrator", "Promise"]


@dataclass(frozen=True)
class Promise:
    """One check: what was promised, whether it held, and what was seen."""

    name: str
    held: bool
    detail: str
    at_s: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-able."""
        return asdict(self)


@dataclass
class Narrator:
    """Prints timed lines and keeps the promises for the summary."""

    console: Console
    clock: Callable[[], float] = time.monotonic
    promises: list[Promise] = field(default_factory=list)
    lines: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._start = self.clock()

    def elapsed(self) -> float:
        """Seconds since the demo started."""
        return self.clock() - self._start

    def step(self, text: str) -> None:
        """Say what happens next."""
        self._line("→", "cyan", text)

    def note(self, text: str) -> None:
        """A detail under the current step."""
        self._line(" ", "dim", text)

    def check(self, name: str, held: bool, detail: str = "") -> bool:
        """Record and print a promise; return whether it held."""
        promise = Promise(name, bool(held), detail, round(self.elapsed(), 3))
        self.promises.append(promise)
        mark, style = ("✔", "green") if held else ("✘", "bold red")
        self._line(mark, style, f"{name}" + (f" — {detail}" if detail else ""))
        return promise.held

    @property
    def all_held(self) -> bool:
        """Whether there was at least one promise and every one held."""
        return bool(self.promises) and all(p.held for p in self.promises)

    def summary_table(self, rows: list[dict[str, Any]]) -> Table:
        """The experiments as a table (one row per candidate)."""
        table = Table(title="evolution gone wrong — summary")
        columns = list(dict.fromkeys(key for row in rows for key in row))
        for column in columns:
            table.add_column(column)
        for row in rows:
            table.add_row(*(str(row.get(column, "")) for column in columns))
        return table

    def _line(self, mark: str, style: str, text: str) -> None:
        at = self.elapsed()
        self.lines.append({"at_s": round(at, 3), "mark": mark, "text": text})
        self.console.print(f"[dim]{at:7.2f}s[/]  [{style}]{mark}[/] {text}", highlight=False)
