"""`project-o vault quarantine`: the canary writes kept out of the agent's memory.

Listing and showing read the vault's files (no supervisor needed). Applying
goes through the running supervisor when one holds the vault — its main
must reload to serve the writes — and straight into the vault otherwise.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from project_o.client import Client
from project_o.errors import VaultError
from project_o.vault import Vault
from project_o.vault.quarantine import Quarantine
from project_o.vault.sealing import Keyring

__all__ = ["apply_overlay", "render_overlays", "render_writes"]


def render_overlays(vault: Path, *, as_json: bool = False,
                    console: Console | None = None) -> None:
    """Print every overlay of ``vault``: id, status, version, experiment, writes, reason."""
    overlays = [info.to_dict() for info in Quarantine(vault / "quarantine").overlays()]
    if as_json:
        print(json.dumps({"overlays": overlays}, indent=2))
        return
    console = console or Console()
    if not overlays:
        console.print("no canary writes are quarantined in this vault")
        return
    table = Table(title="canary writes kept apart (apply one with --apply ID)")
    for column in ("id", "status", "version", "experiment", "writes", "since", "reason"):
        table.add_column(column)
    for info in overlays:
        since = _dt.datetime.fromtimestamp(info["created_ns"] / 1e9).strftime("%Y-%m-%d %H:%M")
        table.add_row(info["id"], info["status"], info["version"][:12],
                      info["experiment_id"], str(info["writes"]), since, info["reason"])
    console.print(table)


def render_writes(vault: Path, overlay_id: str, *, keyring: Keyring | None = None,
                  as_json: bool = False, console: Console | None = None) -> None:
    """Print the writes of one overlay, each with the requests that made it.

    ``keyring`` (:func:`~project_o.vault.sealing.load_keyring`) opens a sealed vault's writes.
    """
    quarantine = Quarantine(vault / "quarantine", keyring=keyring)
    info = quarantine.get(overlay_id)
    writes = [write.to_json() for write in quarantine.writes(overlay_id)]
    if as_json:
        print(json.dumps({**info.to_dict(), "writes_shown": writes}, indent=2))
        return
    console = console or Console()
    table = Table(title=f"overlay {info.id} of version {info.version[:12]}: {info.status}")
    for column in ("sequence", "operation", "data", "requests"):
        table.add_column(column)
    for write in writes:
        table.add_row(str(write["sequence"]), write["operation"],
                      json.dumps(write["data"])[:80], ", ".join(write["requests"]))
    console.print(table)


def apply_overlay(vault: Path, overlay_id: str, *,
                  keyring: Keyring | None = None) -> dict[str, Any]:
    """Append a quarantined overlay's writes to the agent's memory; the overlay's manifest.

    ``keyring``: the vault's keys, when no supervisor holds it and it is sealed.
    """
    Quarantine(vault / "quarantine").get(overlay_id)  # an unknown id fails here, offline
    try:
        opened = Vault.open(vault, keyring=keyring)
    except VaultError as exc:
        if "already open" not in str(exc):
            raise
        client = Client(vault)  # a supervisor holds the vault: its main must reload
        try:
            return client.apply_overlay(overlay_id)
        finally:
            client.close()
    with opened:
        return opened.quarantine.apply(overlay_id, opened.wal.submit_acknowledged).to_dict()
