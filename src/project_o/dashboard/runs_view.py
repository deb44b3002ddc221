"""An evolution run (``project-o evolve``) as the dashboard draws it, from its catalog.

::

    events "evolution_run"         ─▶ the run, its configuration and seed
    events "evolution_generation"  ─▶ best / median per generation, failures by kind,
                                      the population (whose scores give the distribution)
    evaluations + versions         ─▶ each operator's success rate (a child that beats
                                      its best parent), the winner's lineage to the seed
    events "evolution_universes"   ─▶ universes side by side (a score line per universe)

Read-only, and cheap enough to repeat while the run goes: the catalog
is read in one short transaction per call.
"""

from __future__ import annotations

import json
import math
import sqlite3
import statistics
from pathlib import Path
from typing import Any, Final

from project_o.dashboard.catalog_view import diff_sources, read_only
from project_o.evolution.run_records import UNIVERSES_EVENT
from project_o.evolution.run_store import CATALOG_FILE

__all__ = ["CATALOG_FILE", "FAILURE_FIELDS", "list_runs", "run_detail"]

#: the per-generation failure counts the GA keeps, by failure kind
FAILURE_FIELDS: Final = {"crash": "crashes", "timeout": "timeouts", "gamed": "gamed",
                         "error": "errors"}
_RUN, _GENERATION = "evolution_run", "evolution_generation"
_UNIVERSES = UNIVERSES_EVENT


def list_runs(path: Path) -> list[dict[str, Any]]:
    """Every run in the catalog, newest first, with how many generations it completed."""
    with read_only(path) as conn:
        runs = conn.execute("SELECT subject, data, ts FROM events WHERE kind = ?"
                            " ORDER BY id DESC", (_RUN,)).fetchall()
        # a universes run is one generation, done when its outcome is stored
        done = dict(conn.execute("SELECT subject, COUNT(*) FROM events WHERE kind IN (?, ?)"
                                 " GROUP BY subject", (_GENERATION, _UNIVERSES)).fetchall())
    listed = []
    for run_id, data, ts in runs:
        info = json.loads(data)
        listed.append({"id": run_id, "started": ts, "config": info.get("config", {}),
                       "seed": info.get("seed"), "generations_done": done.get(run_id, 0)})
    return listed


def run_detail(path: Path, run_id: str) -> dict[str, Any] | None:
    """Everything the run view draws for ``run_id``, or None if the catalog has no such run."""
    with read_only(path) as conn:
        head = conn.execute("SELECT data, ts FROM events WHERE kind = ? AND subject = ?",
                            (_RUN, run_id)).fetchone()
        if head is None:
            return None
        states = [json.loads(d) for (d,) in conn.execute(
            "SELECT data FROM events WHERE kind = ? AND subject = ? ORDER BY id",
            (_GENERATION, run_id))]
        universes = conn.execute("SELECT data FROM events WHERE kind = ? AND subject = ?"
                                 " ORDER BY id DESC LIMIT 1", (_UNIVERSES, run_id)).fetchone()
        scores, failures = _evaluations(conn, run_id)
        versions = _versions(conn, set(scores) | set(failures))
    info = json.loads(head[0])
    seed = info.get("seed")
    history = states[-1].get("history", []) if states else []
    winner = states[-1].get("best") if states else seed
    lineage = _lineage(winner, seed, versions, scores)
    return {
        "id": run_id, "started": head[1], "config": info.get("config", {}), "seed": seed,
        "generations": [_generation(row, state, scores)
                        for row, state in zip(history, states, strict=False)],
        "failure_kinds": _failure_kinds(failures),
        "operators": _operators(versions, scores, failures),
        "winner": winner, "lineage": lineage,
        "winner_diff": _winner_diff(versions, seed, winner),
        "evaluations": len(scores) + len(failures),
        "universes": json.loads(universes[0]) if universes else None,
    }


def _evaluations(conn: sqlite3.Connection,
                 run_id: str) -> tuple[dict[str, float], dict[str, str]]:
    scores: dict[str, float] = {}
    failures: dict[str, str] = {}
    for vid, metrics, failure in conn.execute(
            "SELECT version_id, metrics, failure FROM evaluations WHERE run_id = ? ORDER BY id",
            (run_id,)):
        if vid in scores or vid in failures:
            continue
        if failure is not None:
            failures[vid] = str(json.loads(failure).get("kind", "crash"))
            continue
        score = json.loads(metrics).get("score")
        if isinstance(score, int | float) and math.isfinite(score):
            scores[vid] = float(score)
    return scores, failures


def _versions(conn: sqlite3.Connection, ids: set[str]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for vid, parents, operator, params, source in conn.execute(
            "SELECT id, parents, operator, params, source FROM versions"):
        if vid in ids or operator == "seed":
            details = (json.loads(params) or {}).get("details", {})
            found[vid] = {"parents": json.loads(parents), "operator": operator,
                          "source": json.loads(source),
                          "change": details.get("change", "") if isinstance(details, dict)
                          else ""}
    return found


def _generation(row: dict[str, Any], state: dict[str, Any],
                scores: dict[str, float]) -> dict[str, Any]:
    values = sorted(scores[v] for v in state.get("population", []) if v in scores)
    return {
        "generation": row.get("generation"), "best": row.get("best"),
        "median": row.get("median"), "evaluated": row.get("evaluated", 0),
        "seconds": row.get("seconds"),
        "failures": {kind: row.get(name, 0) for kind, name in FAILURE_FIELDS.items()},
        "distribution": _five_numbers(values),
    }


def _five_numbers(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    if len(values) == 1:
        return {"min": values[0], "q1": values[0], "median": values[0], "q3": values[0],
                "max": values[0]}
    q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return {"min": values[0], "q1": q1, "median": median, "q3": q3, "max": values[-1]}


def _failure_kinds(failures: dict[str, str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for kind in failures.values():
        counts[kind] = counts.get(kind, 0) + 1
    return counts


def _operators(versions: dict[str, dict[str, Any]], scores: dict[str, float],
               failures: dict[str, str]) -> list[dict[str, Any]]:
    """Per operator: children made, failed, and better than their best parent."""
    table: dict[str, dict[str, Any]] = {}
    for vid, version in versions.items():
        if version["operator"] == "seed" or (vid not in scores and vid not in failures):
            continue
        row = table.setdefault(version["operator"], {"operator": version["operator"],
                                                     "children": 0, "failed": 0, "better": 0})
        row["children"] += 1
        if vid in failures:
            row["failed"] += 1
            continue
        parents = [scores[p] for p in version["parents"] if p in scores]
        if parents and scores[vid] > max(parents):
            row["better"] += 1
    for row in table.values():
        row["success_rate"] = row["better"] / row["children"]
    return sorted(table.values(), key=lambda r: (-r["success_rate"], r["operator"]))


def _lineage(winner: str | None, seed: str | None, versions: dict[str, dict[str, Any]],
             scores: dict[str, float]) -> list[dict[str, Any]]:
    """The winner, its best-scoring parent, that one's... back to the seed."""
    chain: list[dict[str, Any]] = []
    current, seen = winner, set()
    while current is not None and current not in seen and current in versions:
        seen.add(current)
        version = versions[current]
        chain.append({"id": current, "operator": version["operator"],
                      "change": version["change"], "score": scores.get(current)})
        if current == seed:
            break
        parents = version["parents"]
        current = max(parents, key=lambda p: scores.get(p, -math.inf)) if parents else None
    return chain


def _winner_diff(versions: dict[str, dict[str, Any]], seed: str | None,
                 winner: str | None) -> str:
    if seed not in versions or winner not in versions:
        return ""
    return diff_sources(versions[seed]["source"], versions[winner]["source"])
