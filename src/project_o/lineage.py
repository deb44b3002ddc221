"""The version tree of a vault: where each version came from and what became of it.

``project-o lineage`` reads ``VAULT/catalog.sqlite`` directly (no running
supervisor needed) and draws every version under its parent::

    catalog.versions ──► build_lineage() ──► [LineageNode] ──► render_lineage() (rich.tree)
    catalog.experiments ─┘ (last experiment of each candidate)   └► lineage_to_dict() (--json)

    ● 3f2a9c01d4e7  serving   user                     served requests successfully
    ├── ✘ 81bd02aa7c11  rejected  user  shadow rejected  instance crashed (RecursionError)
    └── ● 0c9de4f5a012  promoted  user  canary promoted  latency better (p < 0.05)
        └── ↺ 77aa1b2c3d4e  rolled back  …

A version with several parents (crossover) is drawn under its first one and
names the others; a version whose parents are not in the catalog is a root.
"""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from project_o.errors import InvalidArgument
from project_o.vault.catalog import Catalog, ExperimentRecord, VersionRecord

if TYPE_CHECKING:
    from project_o.client import Client

__all__ = [
    "CATALOG_FILE",
    "SERVING_STATUSES",
    "STATUS_STYLES",
    "LineageNode",
    "build_lineage",
    "lineage_to_dict",
    "read_lineage",
    "render_experiment",
    "render_experiments",
    "render_lineage",
    "watch_experiment",
]

#: the catalog's file name inside a vault (see project_o.vault)
CATALOG_FILE = "catalog.sqlite"

#: status -> (mark, rich style); statuses written by the supervisor and its experiments
STATUS_STYLES: dict[str, tuple[str, str]] = {
    "serving": ("●", "bold green"),
    "main": ("●", "bold green"),
    "promoted": ("●", "green"),
    "good": ("✔", "green"),
    "shadow": ("◐", "cyan"),
    "canary": ("◑", "yellow"),
    "validation": ("◑", "yellow"),
    "candidate": ("○", "dim"),
    "proposed": ("?", "magenta"),
    "rejected": ("✘", "red"),
    "rolled_back": ("↺", "bold red"),
    "retired": ("·", "dim"),
}
_UNKNOWN_STYLE = ("·", "")
#: statuses of a version that serves (or served last, if it is the newest such)
SERVING_STATUSES = ("serving", "main", "promoted")
#: how often ``watch_experiment`` polls; experiments take seconds, so 0.5 s is plenty
WATCH_POLL_S = 0.5


@dataclass
class LineageNode:
    """One version in the tree, with its children (newest last)."""

    version: VersionRecord
    serving: bool = False
    experiment: ExperimentRecord | None = None
    children: list[LineageNode] = field(default_factory=list)

    @property
    def extra_parents(self) -> tuple[str, ...]:
        """Parents other than the one it is drawn under (crossover)."""
        return self.version.parents[1:]


def read_lineage(vault: Path) -> list[LineageNode]:
    """Open ``vault``'s catalog (only reading it) and build the tree.

    Raises InvalidArgument if the vault has no catalog: opening one would
    create it, and a typo in ``--vault`` should not leave an empty vault behind.
    """
    path = Path(vault) / CATALOG_FILE
    if not path.is_file():
        raise InvalidArgument(
            f"no catalog at {path}: expected a vault directory that a supervisor has "
            "served from; pass --vault DIR (default $PROJECT_O_VAULT or ./vault)"
        )
    with Catalog.open(path) as catalog:
        return build_lineage(catalog.list_versions(), catalog.list_experiments())


def build_lineage(
    versions: Sequence[VersionRecord], experiments: Iterable[ExperimentRecord] = ()
) -> list[LineageNode]:
    """Arrange ``versions`` (oldest first) as a forest; the roots, oldest first.

    The serving version is the newest one whose status is ``serving``,
    ``main`` or ``promoted`` (the catalog keeps no pointer to it; the
    supervisor retires a main when it promotes another, and a rolled-back
    candidate leaves the one before it the newest). Each node carries the
    latest experiment that had it as the candidate.
    """
    nodes = {v.id: LineageNode(v) for v in versions}
    latest: dict[str, ExperimentRecord] = {}
    for exp in sorted(experiments, key=lambda e: e.updated_at):
        latest[exp.candidate_version] = exp
    for version_id, exp in latest.items():
        if version_id in nodes:
            nodes[version_id].experiment = exp
    serving = [v.id for v in versions if v.status in SERVING_STATUSES]
    if serving:
        nodes[serving[-1]].serving = True
    roots: list[LineageNode] = []
    for version in versions:
        parent = next((p for p in version.parents if p in nodes and p != version.id), None)
        (nodes[parent].children if parent else roots).append(nodes[version.id])
    return roots


def render_lineage(roots: Sequence[LineageNode], console: Console | None = None,
                   *, title: str = "versions") -> None:
    """Print the forest as one rich tree."""
    console = console or Console()
    if not roots:
        console.print(f"{title}: none yet (the catalog has no versions)")
        return
    tree = Tree(Text(title, style="bold"))
    for root in roots:
        _add(tree, root)
    console.print(tree)


def lineage_to_dict(roots: Sequence[LineageNode]) -> dict[str, Any]:
    """A JSON-able view: ``{"serving", "versions": [nested nodes]}``."""
    serving = next((n.version.id for n in _walk(roots) if n.serving), None)
    return {"serving": serving, "versions": [_node_dict(n) for n in roots]}


# -- drawing ------------------------------------------------------------


def _add(parent: Tree, node: LineageNode) -> None:
    branch = parent.add(_label(node))
    for child in node.children:
        _add(branch, child)


def _label(node: LineageNode) -> Text:
    version = node.version
    mark, style = STATUS_STYLES.get(version.status, _UNKNOWN_STYLE)
    text = Text()
    text.append(f"{mark} {version.id}", style=style)
    text.append(f"  {version.status.replace('_', ' ')}", style=style)
    if node.serving:
        text.append("  ◀ serving", style="bold green")
    text.append(f"  {version.operator or '?'}", style="dim")
    text.append(f"  {_when(version.created_at)}", style="dim")
    if node.extra_parents:
        text.append(f"  × {', '.join(node.extra_parents)}", style="dim")
    if node.experiment is not None:
        exp = node.experiment
        text.append(f"  [{exp.kind} {exp.status.replace('_', ' ')}, stage {exp.stage}]",
                    style="italic")
    reason = version.reason or (node.experiment.reason if node.experiment else "")
    if reason:
        text.append(f"  — {reason}")
    return text


def _when(timestamp: float) -> str:
    return _dt.datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M:%S")


def _walk(nodes: Iterable[LineageNode]) -> Iterable[LineageNode]:
    for node in nodes:
        yield node
        yield from _walk(node.children)


def _node_dict(node: LineageNode) -> dict[str, Any]:
    version, exp = node.version, node.experiment
    return {
        "id": version.id, "status": version.status, "reason": version.reason,
        "operator": version.operator, "parents": list(version.parents),
        "created_at": version.created_at, "serving": node.serving,
        "experiment": None if exp is None else {
            "id": exp.id, "kind": exp.kind, "stage": exp.stage, "status": exp.status,
            "decision": exp.decision, "reason": exp.reason,
        },
        "children": [_node_dict(child) for child in node.children],
    }


# -- experiments (GET /v1/evolution/experiments[/{id}]) -----------------


def render_experiment(experiment: Mapping[str, Any], console: Console | None = None) -> None:
    """Print one experiment: what it compares, where it stands, its statistics and timeline."""
    console = console or Console()
    mark, style = STATUS_STYLES.get(_version_status(experiment), _UNKNOWN_STYLE)
    console.print(Text.assemble(
        (f"{mark} experiment {experiment.get('id')}", style),
        f"  {experiment.get('kind')}: {experiment.get('candidate_version')} vs "
        f"{experiment.get('baseline_version')}  stage {experiment.get('stage')}, "
        f"status {experiment.get('status')}",
    ))
    if experiment.get("reason"):
        console.print(f"  reason: {experiment['reason']}")
    statistics = experiment.get("statistics") or {}
    if statistics:
        console.print(_statistics_table(statistics))
    timeline = experiment.get("timeline") or []
    if timeline:
        start = float(timeline[0].get("ts", 0.0))
        for entry in timeline:
            at = float(entry.get("ts", start)) - start
            console.print(f"  {at:7.2f}s  {entry.get('stage', ''):<11} {entry.get('event', '')}"
                          f"  {entry.get('detail', '') or ''}")


def render_experiments(experiments: Sequence[Mapping[str, Any]],
                       console: Console | None = None) -> None:
    """Print a table of experiments (newest first, as the endpoint lists them)."""
    console = console or Console()
    if not experiments:
        console.print("no experiments yet")
        return
    table = Table(title="experiments")
    for column in ("id", "kind", "candidate", "baseline", "stage", "status", "reason"):
        table.add_column(column)
    for e in experiments:
        table.add_row(*(str(e.get(key) or "") for key in (
            "id", "kind", "candidate_version", "baseline_version", "stage", "status", "reason")))
    console.print(table)


def watch_experiment(client: Client, experiment_id: str, *, quiet: bool = False,
                     timeout_s: float = 600.0, console: Console | None = None) -> dict[str, Any]:
    """Poll an experiment until it is no longer running (or ``timeout_s``); the last view."""
    console = console or Console(stderr=True)
    deadline, seen = time.monotonic() + timeout_s, ""
    while True:
        experiment = client.experiment(experiment_id)
        where = f"{experiment.get('stage')} ({experiment.get('status')})"
        if where != seen and not quiet:
            console.print(f"  … {where}")
        seen = where
        if experiment.get("status") != "running" or time.monotonic() > deadline:
            return experiment
        time.sleep(WATCH_POLL_S)


def _version_status(experiment: Mapping[str, Any]) -> str:
    status = str(experiment.get("status"))
    return {"running": "canary" if "canary" in str(experiment.get("stage")) else "shadow",
            "aborted": "retired"}.get(status, status)


def _statistics_table(statistics: Mapping[str, Any]) -> Table:
    table = Table(title="statistics (candidate vs baseline)")
    for column in ("metric", "n base", "n cand", "mean base", "mean cand", "p", "decision"):
        table.add_column(column)
    for metric, summary in statistics.items():
        n, mean = summary.get("n", {}), summary.get("mean", {})
        table.add_row(metric, str(n.get("baseline", "")), str(n.get("candidate", "")),
                      _num(mean.get("baseline")), _num(mean.get("candidate")),
                      _num(summary.get("p_value")), str(summary.get("decision", "")))
    return table


def _num(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, int | float) else ""
