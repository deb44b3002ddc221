"""Print `GET /v1/status` as a tree a person can read at a glance."""

from __future__ import annotations

import datetime as _dt
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.tree import Tree

__all__ = ["render_status"]


def render_status(status: dict[str, Any], console: Console | None = None) -> None:
    """Print the supervision tree (heart -> supervisor -> parts), the vault and recent events."""
    console = console or Console()
    root = Tree(f"heart pid {status.get('heart_pid')}")
    supervisor = root.add(f"supervisor pid {status.get('supervisor_pid')} — "
                          f"version {status.get('version')}, restarts {status.get('restarts')}")
    tree = status.get("tree")
    if isinstance(tree, dict):
        for part in tree.get("children", []):
            _add_part(supervisor, part, status)
    else:  # a supervisor from before the tree: its instances only
        for inst in status.get("instances", []):
            supervisor.add(_instance_line(inst))
        supervisor.add(_vault_line(status.get("vault", {})))
    console.print(root)
    _print_sandbox(status.get("sandbox"), console)
    events = status.get("events", [])[-15:]
    if events:
        table = Table(title="recent events")
        for column in ("when", "kind", "subject", "reason"):
            table.add_column(column)
        for event in events:
            table.add_row(_ago(event["ts"]), event["kind"], event["subject"], event["reason"])
        console.print(table)


def _print_sandbox(sandbox: Any, console: Console) -> None:
    """Which layers contain agent code; a missing one is said, and an off sandbox shouted."""
    if not isinstance(sandbox, dict):
        console.print("[yellow]sandbox: not reported by this supervisor[/yellow]")
        return
    if not sandbox.get("enabled", True):
        console.print("[bold red]SANDBOX OFF (--no-sandbox): agent code runs with the "
                      "supervisor's rights[/bold red]")
        return
    console.print(f"sandbox: {', '.join(sandbox.get('active', [])) or 'no layer'}")
    for name, why in sandbox.get("missing", {}).items():
        console.print(f"  [yellow]not applied[/yellow] {name}: {why}")


def _add_part(parent: Tree, part: dict[str, Any], status: dict[str, Any]) -> None:
    """One child of the supervisor; the agent with its zygote and instances below it."""
    name, state = part.get("id"), part.get("status")
    if name == "vault":
        node = parent.add(f"vault ({state}) {_vault_line(status.get('vault', {}))}")
    elif name == "agent":
        node = parent.add(
            f"agent ({state}) version {part.get('version')}, "
            f"{part.get('instance_restarts', 0)} instance restarts "
            f"(limit {part.get('max_restarts')} in {part.get('max_seconds')} s)"
        )
        instances = {i.get("instance_id"): i for i in status.get("instances", [])}
        for child in part.get("children", []):
            inst = instances.get(child.get("instance_id"))
            node.add(_instance_line(inst) if inst else f"{child.get('id')} ({child.get('status')})"
                     f" pid {child.get('pid')}")
    else:
        node = parent.add(f"{name} ({state})")
    if part.get("restarts"):
        node.add(f"restarted {part['restarts']} times; last exit: {part.get('last_exit')}")


def _instance_line(inst: dict[str, Any]) -> str:
    return (f"{inst['role']:<8} pid {inst['pid']:<7} {inst['version']}  "
            f"restarts {inst['restarts']}  rss {inst['rss_bytes'] / 2**20:.1f} MiB  "
            f"beat {_ago(inst.get('last_heartbeat'))}")


def _vault_line(vault: dict[str, Any]) -> str:
    return (f"{vault.get('path')}: last sequence {vault.get('last_sequence')}, "
            f"last checkpoint {vault.get('last_checkpoint')}")


def _ago(timestamp: float | None) -> str:
    if not timestamp:
        return "never"
    seconds = (_dt.datetime.now().timestamp() - timestamp)
    return f"{seconds:.1f}s ago"
