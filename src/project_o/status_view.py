"""Print `GET /v1/status` as a tree a person can read at a glance."""

from __future__ import annotations

import datetime as _dt
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.tree import Tree

__all__ = ["render_status"]


def render_status(status: dict[str, Any], console: Console | None = None) -> None:
    """Print the process tree, the vault and recent events."""
    console = console or Console()
    root = Tree(f"heart pid {status.get('heart_pid')}")
    supervisor = root.add(f"supervisor pid {status.get('supervisor_pid')} — "
                          f"version {status.get('version')}, restarts {status.get('restarts')}")
    for inst in status.get("instances", []):
        supervisor.add(
            f"{inst['role']:<8} pid {inst['pid']:<7} {inst['version']}  "
            f"restarts {inst['restarts']}  rss {inst['rss_bytes'] / 2**20:.1f} MiB  "
            f"beat {_ago(inst.get('last_heartbeat'))}"
        )
    vault = status.get("vault", {})
    supervisor.add(f"vault {vault.get('path')}: last sequence {vault.get('last_sequence')}, "
                   f"last checkpoint {vault.get('last_checkpoint')}")
    console.print(root)
    events = status.get("events", [])[-15:]
    if events:
        table = Table(title="recent events")
        for column in ("when", "kind", "subject", "reason"):
            table.add_column(column)
        for event in events:
            table.add_row(_ago(event["ts"]), event["kind"], event["subject"], event["reason"])
        console.print(table)


def _ago(timestamp: float | None) -> str:
    if not timestamp:
        return "never"
    seconds = (_dt.datetime.now().timestamp() - timestamp)
    return f"{seconds:.1f}s ago"
