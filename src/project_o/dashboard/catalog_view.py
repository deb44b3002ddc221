"""What the dashboard shows from a catalog file, read-only.

A catalog is ``catalog.sqlite`` in a vault (a supervisor's, or an
evolution run's ``RUN_DIR/VAULT``). Opened with ``mode=ro`` for each
read, so the dashboard never writes, never migrates, and never holds a
lock the supervisor or a running ``project-o evolve`` would wait on::

    versions_page(path, offset, limit)   the lineage, without sources (1,000s of rows)
    version_detail(path, id)             one version: sources, and a diff per parent
    experiments(path)                    every experiment, newest first (the API's shape)
    events(path, limit)                  the newest events, oldest first
"""

from __future__ import annotations

import contextlib
import difflib
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

from project_o.errors import InvalidArgument

__all__ = [
    "MAX_PAGE",
    "events",
    "experiments",
    "proposer",
    "read_only",
    "version_detail",
    "versions_page",
]

#: versions per page; a thousand-version lineage comes in a few pages
MAX_PAGE: Final = 1000
#: a diff longer than this many lines is cut (and says so)
MAX_DIFF_LINES: Final = 4000


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[sqlite3.Connection]:
    """A read-only connection to the catalog at ``path``."""
    if not path.is_file():
        raise InvalidArgument(f"no catalog at {path}; give a vault or an evolution run directory")
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5.0)
    try:
        yield conn
    finally:
        conn.close()


def proposer(operator: str) -> str:
    """Who made a version with ``operator``: person, agent, LLM or operator."""
    if operator in ("user", "seed", ""):
        return "person"
    if operator.startswith("llm"):
        return "LLM"
    if operator in ("agent", "ctx.evolve", "perception"):
        return "agent"
    return "operator"


def versions_page(path: Path, offset: int = 0, limit: int = MAX_PAGE) -> dict[str, Any]:
    """``{"total", "offset", "versions": [...]}``: oldest first, without sources."""
    limit = max(1, min(limit, MAX_PAGE))
    with read_only(path) as conn:
        total = conn.execute("SELECT COUNT(*) FROM versions").fetchone()[0]
        rows = conn.execute(
            "SELECT id, parents, operator, params, status, reason, created_at FROM versions"
            " ORDER BY created_at, id LIMIT ? OFFSET ?", (limit, max(0, offset))).fetchall()
        why = _experiment_reasons(conn)
    versions = []
    for vid, parents, operator, params, status, reason, created in rows:
        details = (json.loads(params) or {}).get("details", {})
        versions.append({
            "id": vid, "parents": json.loads(parents), "operator": operator,
            "proposer": proposer(operator), "status": status,
            "reason": reason or why.get(vid, ""), "created_at": created,
            "hypothesis": why.get(f"hypothesis:{vid}", ""),
            "change": details.get("change", "") if isinstance(details, dict) else "",
        })
    return {"total": total, "offset": offset, "versions": versions}


def _experiment_reasons(conn: sqlite3.Connection) -> dict[str, str]:
    reasons: dict[str, str] = {}
    for candidate, reason, stats in conn.execute(
            "SELECT candidate_version, reason, stats FROM experiments ORDER BY created_at"):
        reasons[candidate] = reason
        spec = (json.loads(stats) or {}).get("spec", {})
        if isinstance(spec, dict) and spec.get("hypothesis"):
            reasons[f"hypothesis:{candidate}"] = str(spec["hypothesis"])
    return reasons


def version_detail(path: Path, version_id: str) -> dict[str, Any] | None:
    """One version with its source files and a unified diff against each parent."""
    with read_only(path) as conn:
        row = _version_row(conn, version_id)
        if row is None:
            return None
        parents = [_version_row(conn, p) for p in row["parents"]]
    diffs = [{"parent": p["id"], "diff": diff_sources(p["source"], row["source"])}
             for p in parents if p is not None]
    return {**row, "proposer": proposer(row["operator"]), "diffs": diffs}


def _version_row(conn: sqlite3.Connection, version_id: str) -> dict[str, Any] | None:
    found = conn.execute("SELECT id, parents, operator, params, source, status, reason,"
                         " created_at FROM versions WHERE id = ?", (version_id,)).fetchone()
    if found is None:
        return None
    vid, parents, operator, params, source, status, reason, created = found
    return {"id": vid, "parents": json.loads(parents), "operator": operator,
            "params": json.loads(params), "source": json.loads(source), "status": status,
            "reason": reason, "created_at": created}


def diff_sources(old: dict[str, str], new: dict[str, str]) -> str:
    """A unified diff of two ``{file name: text}`` sources, file by file."""
    lines: list[str] = []
    for name in sorted(set(old) | set(new)):
        lines.extend(difflib.unified_diff(
            old.get(name, "").splitlines(), new.get(name, "").splitlines(),
            fromfile=f"a/{name}", tofile=f"b/{name}", lineterm=""))
    if len(lines) > MAX_DIFF_LINES:
        lines = [*lines[:MAX_DIFF_LINES], f"... {len(lines) - MAX_DIFF_LINES} more lines"]
    return "\n".join(lines)


def experiments(path: Path) -> list[dict[str, Any]]:
    """Every experiment in the catalog, newest first, as the API shows one."""
    with read_only(path) as conn:
        rows = conn.execute(
            "SELECT id, kind, candidate_version, baseline_version, stage, status, decision,"
            " reason, stats, created_at FROM experiments ORDER BY created_at DESC").fetchall()
    found = []
    for eid, kind, cand, base, stage, status, decision, reason, stats, created in rows:
        data = json.loads(stats) or {}
        found.append({
            "id": eid, "kind": kind, "candidate_version": cand, "baseline_version": base,
            "stage": stage, "status": status, "decision": decision, "reason": reason,
            "samples": data.get("samples", {}), "statistics": data.get("statistics", {}),
            "timeline": data.get("timeline", []), "operator": data.get("operator", ""),
            "hypothesis": (data.get("spec") or {}).get("hypothesis", ""), "created_at": created,
        })
    return found


def events(path: Path, limit: int = 10_000) -> list[dict[str, Any]]:
    """The newest ``limit`` events of the catalog, oldest first."""
    with read_only(path) as conn:
        rows = conn.execute("SELECT ts, kind, subject, reason FROM events"
                            " WHERE kind NOT LIKE 'evolution_%' ORDER BY id DESC LIMIT ?",
                            (limit,)).fetchall()
    return [{"ts": ts, "kind": kind, "subject": subject, "reason": reason}
            for ts, kind, subject, reason in reversed(rows)]
