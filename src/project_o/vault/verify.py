"""``project-o vault verify``: read every byte of a vault and say if it is sound.

Sound means: every WAL record checks out (a torn tail is reported; it is
the normal trace of a crash mid-write and is repaired on open), every
checkpoint verifies, the restore point is reachable (the WAL continues
right after the newest valid checkpoint), SQLite finds the catalog
intact, and, when the vault is encrypted, every sealed record and
checkpoint opens under the given keyring (its tag verifies). A sealed one
whose key is not given cannot be checked: that is a problem too, never a
pass. ``keys_in_use`` says which key ids the vault still needs (after a
rotation, an old key may be dropped once it is no longer listed).
Read-only unless ``repair=True``.
"""

from __future__ import annotations

import sqlite3
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from project_o.errors import CheckpointCorrupt, VaultKeyError
from project_o.vault.checkpoint import CheckpointInfo, CheckpointStore
from project_o.vault.sealing import Keyring
from project_o.vault.wal import scan

__all__ = ["VerifyReport", "render_report", "verify_vault"]


@dataclass
class VerifyReport:
    """Everything `vault verify` found."""

    directory: str
    segments: int = 0
    entries: int = 0
    first_sequence: int | None = None
    last_sequence: int | None = None
    torn_tail: dict[str, Any] | None = None
    torn_tail_repaired: bool = False
    corruption: list[dict[str, Any]] = field(default_factory=list)
    checkpoints_valid: list[dict[str, Any]] = field(default_factory=list)
    checkpoints_invalid: list[dict[str, Any]] = field(default_factory=list)
    restore_point: dict[str, Any] | None = None
    catalog: str = "absent"
    #: key id (8 hex digits) -> sealed WAL records and checkpoints that need it
    keys_in_use: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def sound(self) -> bool:
        """True when nothing needs a human."""
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able view (includes ``sound``)."""
        return {**asdict(self), "sound": self.sound}


def verify_vault(
    directory: Path, *, repair: bool = False, keyring: Keyring | None = None
) -> VerifyReport:
    """Check the vault at ``directory`` and return what was found.

    ``keyring`` opens sealed records and checkpoints (their tags are checked).
    """
    report = VerifyReport(directory=str(directory))
    _check_wal(directory / "wal", report, repair, keyring)
    newest = _check_checkpoints(directory / "checkpoints", report, keyring)
    _check_restore_point(newest, report)
    _check_catalog(directory / "catalog.sqlite", report)
    return report


def _check_wal(wal_dir: Path, report: VerifyReport, repair: bool,
               keyring: Keyring | None) -> None:
    if not wal_dir.is_dir():
        return
    result = scan(wal_dir, repair=repair, keyring=keyring)
    for key_id, count in result.sealed.items():
        report.keys_in_use[key_id] = report.keys_in_use.get(key_id, 0) + count
    for key_id, count in result.unopened.items():
        report.problems.append(f"{count} sealed WAL records need key {key_id}, which was not "
                               "given: their tags are not checked")
    report.segments = len(result.segments)
    report.entries = result.entries
    report.first_sequence = result.first_sequence
    report.last_sequence = result.last_sequence
    if result.torn_tail is not None:
        torn = result.torn_tail
        report.torn_tail = {
            "path": str(torn.path), "offset": torn.offset,
            "bytes": torn.bytes_truncated, "reason": torn.reason,
        }
        report.torn_tail_repaired = result.repaired
    for path, offset, reason in result.corruption:
        report.corruption.append({"path": str(path), "offset": offset, "reason": reason})
        report.problems.append(f"WAL corruption in {path} at offset {offset}: {reason}")


def _check_checkpoints(
    directory: Path, report: VerifyReport, keyring: Keyring | None
) -> CheckpointInfo | None:
    if not directory.is_dir():
        return None
    newest: CheckpointInfo | None = None
    store = CheckpointStore(directory, keyring=keyring)
    for path, outcome in store.scan(deep=True):
        if isinstance(outcome, CheckpointCorrupt):
            report.checkpoints_invalid.append({"path": str(path), "reason": outcome.reason})
            report.problems.append(f"checkpoint {path.name} is invalid: {outcome.reason}")
            continue
        if isinstance(outcome, VaultKeyError):
            _count_key(report, store, path)
            report.checkpoints_invalid.append({"path": str(path), "reason": str(outcome)})
            report.problems.append(f"checkpoint {path.name} is not checked: {outcome}")
            continue
        _count_key(report, store, path)
        report.checkpoints_valid.append(
            {"path": str(path), "id": str(outcome.id), "last_sequence": outcome.last_sequence}
        )
        if newest is None or (outcome.last_sequence, outcome.timestamp_ns) > (
            newest.last_sequence, newest.timestamp_ns
        ):
            newest = outcome
    return newest


def _count_key(report: VerifyReport, store: CheckpointStore, path: Path) -> None:
    try:
        key_id = store.key_id(path)
    except (OSError, CheckpointCorrupt):
        return
    if key_id is not None:
        name = f"{key_id:08x}"
        report.keys_in_use[name] = report.keys_in_use.get(name, 0) + 1


def _check_restore_point(newest: CheckpointInfo | None, report: VerifyReport) -> None:
    covered = newest.last_sequence if newest else 0
    first = report.first_sequence
    if first is not None and first > covered + 1:
        report.problems.append(
            f"the WAL starts at {first} but the newest valid checkpoint covers only "
            f"through {covered}: entries {covered + 1}–{first - 1} are unrecoverable"
        )
    last = report.last_sequence if report.last_sequence is not None else covered
    report.restore_point = {
        "checkpoint": str(newest.id) if newest else None,
        "checkpoint_sequence": covered,
        "replay_entries": max(0, last - covered),
        "last_sequence": max(last, covered),
    }


def _check_catalog(path: Path, report: VerifyReport) -> None:
    if not path.exists():
        return
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            verdict = db.execute("PRAGMA quick_check").fetchone()[0]
    except sqlite3.Error as exc:
        verdict = f"unreadable: {exc}"
    report.catalog = verdict
    if verdict != "ok":
        report.problems.append(f"catalog {path.name}: {verdict}")


def render_report(report: VerifyReport, console: Console | None = None) -> None:
    """Print ``report`` for a human."""
    console = console or Console()
    table = Table(title=f"vault {report.directory}", show_header=False)
    table.add_column("what")
    table.add_column("found")
    rp = report.restore_point or {}
    rows = [
        ("WAL segments", str(report.segments)),
        ("WAL entries", str(report.entries)),
        ("sequences", f"{report.first_sequence} … {report.last_sequence}"),
        ("torn tail", _torn(report)),
        ("corruption", str(len(report.corruption))),
        ("checkpoints", (f"{len(report.checkpoints_valid)} valid, "
                        f"{len(report.checkpoints_invalid)} invalid")),
        ("restore point", (f"checkpoint {rp.get('checkpoint')} @ {rp.get('checkpoint_sequence')}"
                          f" + {rp.get('replay_entries')} WAL entries")),
        ("catalog", report.catalog),
        ("keys in use", ", ".join(f"{key} ({count})" for key, count in
                                  sorted(report.keys_in_use.items())) or "none (not sealed)"),
    ]
    for what, found in rows:
        table.add_row(what, found)
    console.print(table)
    for problem in report.problems:
        console.print(f"[red]problem:[/] {problem}")
    console.print("[green]sound[/]" if report.sound else "[red]NOT sound[/]")


def _torn(report: VerifyReport) -> str:
    if report.torn_tail is None:
        return "none"
    state = "repaired" if report.torn_tail_repaired else "found (repaired on next open)"
    return f"{state}: {report.torn_tail['path']} @ {report.torn_tail['offset']}"
