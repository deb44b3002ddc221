"""``project-o report RUN_OR_VAULT -o report.html``: the dashboard's views in one file.

::

    RUN_DIR (RUN_DIR/VAULT/catalog.sqlite) ─▶ views: evolution runs, the candidates' lineage
    VAULT   (VAULT/catalog.sqlite)         ─▶ views: versions, experiments
      └─ every answer the page would fetch ─▶ window.PROJECT_O_REPORT = {...}
    index.html + style.css + js/*.js + vendor/* inlined ─▶ one HTML file, no network

The page's scripts are the live dashboard's own: in a report they read the
embedded answers instead of calling the server, so the file opens from
``file://`` anywhere, offline.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any, Final

from project_o import __version__
from project_o.dashboard import catalog_view, runs_view
from project_o.dashboard.recorder import load_points
from project_o.dashboard.redteam_view import red_team
from project_o.dashboard.routes import STATIC_DIR, read_bandit
from project_o.errors import InvalidArgument

__all__ = ["MAX_DETAILS", "build_report", "report_data", "write_report"]

#: versions whose sources and diffs the file carries (the newest, plus a run's winners)
MAX_DETAILS: Final = 300
_ASSET = re.compile(r'<link rel="stylesheet" href="([^"]+)">|<script src="([^"]+)"></script>')


def find_catalog(source: Path) -> tuple[str, Path]:
    """``("run", path)`` or ``("vault", path)``: what ``source`` is, and its catalog."""
    if (source / runs_view.CATALOG_FILE).is_file():
        return "run", source / runs_view.CATALOG_FILE
    if (source / "catalog.sqlite").is_file():
        kind = "run" if _has_runs(source / "catalog.sqlite") else "vault"
        return kind, source / "catalog.sqlite"
    raise InvalidArgument(f"{source} is neither an evolution run directory (with "
                          f"{runs_view.CATALOG_FILE}) nor a vault (with catalog.sqlite)")


def _has_runs(catalog: Path) -> bool:
    return bool(runs_view.list_runs(catalog))


def report_data(source: Path) -> dict[str, Any]:
    """Every answer the report's page asks for, keyed by API path."""
    kind, catalog = find_catalog(source)
    api: dict[str, Any] = {}
    versions = _all_versions(catalog)
    api["versions"] = {"total": len(versions), "offset": 0, "versions": versions,
                       "serving": _serving(versions)}
    detailed = {v["id"] for v in versions[-MAX_DETAILS:]}
    snapshot: dict[str, Any] = {"type": "snapshot", "events": [], "traffic": [],
                                "experiment_points": {}, "tree": None}
    if kind == "run":
        runs = [{**run, "dir": str(source)} for run in runs_view.list_runs(catalog)]
        api["runs"] = snapshot["runs"] = runs
        for run in runs:
            detail = runs_view.run_detail(catalog, run["id"])
            api[f"runs/{run['id']}"] = detail
            detailed.update(step["id"] for step in (detail or {}).get("lineage", []))
        views = ["runs", "versions"]
    else:
        api["experiments"] = snapshot["experiments"] = [
            {**x, "points": load_points(catalog.parent, x["id"])}
            for x in catalog_view.experiments(catalog)]
        api["bandit"] = read_bandit(catalog.parent)
        views = ["versions", "experiments"]
    api["redteam"] = red_team([source, catalog.parent])
    if api["redteam"]["rounds"] and "runs" not in views:
        views.append("runs")
        api["runs"] = []
    for version_id in detailed:
        api[f"versions/{version_id}"] = catalog_view.version_detail(catalog, version_id)
    return {"title": f"{source.name} · {time.strftime('%Y-%m-%d %H:%M')}", "kind": kind,
            "views": views, "api": api, "snapshot": snapshot,
            "generator": f"project-o {__version__}"}


def _all_versions(catalog: Path) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    while True:
        page = catalog_view.versions_page(catalog, len(found), catalog_view.MAX_PAGE)
        found.extend(page["versions"])
        if not page["versions"] or len(found) >= page["total"]:
            return found


def _serving(versions: list[dict[str, Any]]) -> str | None:
    serving = [v["id"] for v in versions if v["status"] in ("serving", "active")]
    return serving[-1] if serving else None


def build_report(data: dict[str, Any]) -> str:
    """The dashboard page with every asset and ``data`` inlined."""
    page = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    # "</" cannot appear inside a <script> element; JSON allows "<\/" for it.
    embedded = json.dumps(data, separators=(",", ":"), default=str).replace("</", "<\\/")
    page = page.replace("<script src=", f"<script>window.PROJECT_O_REPORT = {embedded};</script>\n"
                        "<script src=", 1)
    page = _ASSET.sub(_inline, page)
    return page.replace("<title>Project O dashboard</title>",
                        f"<title>Project O report: {_escape(data['title'])}</title>")


def _inline(match: re.Match[str]) -> str:
    stylesheet, script = match.groups()
    path = STATIC_DIR / (stylesheet or script).removeprefix("static/")
    text = path.read_text(encoding="utf-8")
    if stylesheet:
        return f"<style>\n{text}\n</style>"
    safe = text.replace("</script", "<\\/script")  # the same rule as for the data
    return f"<script>\n{safe}\n</script>"


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def write_report(source: Path, output: Path) -> Path:
    """Write the report of the run or vault at ``source`` to ``output``; returns ``output``."""
    output.write_text(build_report(report_data(source)), encoding="utf-8")
    return output
