"""``project-o dashboard`` and ``project-o report``: what the two commands do.

``dashboard`` asks the running supervisor (found the way ``project-o
status`` finds it) for a one-time login ticket with the API token, and
prints, or opens, the URL that redeems it. ``report`` writes one HTML
file from a catalog; it needs no supervisor.
"""

from __future__ import annotations

import webbrowser
from pathlib import Path

import httpx

from project_o.client import Client, SupervisorUnreachable
from project_o.dashboard.report import write_report
from project_o.errors import ProjectOError

__all__ = ["login_url", "open_dashboard", "report"]


def login_url(client: Client, run_dirs: list[Path] | None = None) -> str:
    """A one-time login URL (good for 60 s) for the dashboard of ``client``'s supervisor."""
    body = {"run_dirs": [str(d.resolve()) for d in run_dirs or []]}
    try:
        response = httpx.post(f"{client.url}/ui/api/ticket", json=body, timeout=10.0,
                              headers={"Authorization": f"Bearer {client.token}"})
    except httpx.TransportError as exc:
        raise SupervisorUnreachable(f"cannot reach the supervisor at {client.url}: {exc}; "
                                    "is `project-o run` running?") from exc
    if response.status_code != 200:
        raise ProjectOError(f"the supervisor refused a dashboard ticket "
                            f"({response.status_code}): {response.text}")
    return f"{client.url}{response.json()['path']}"


def open_dashboard(client: Client, run_dirs: list[Path], *, open_browser: bool) -> str:
    """The login URL, opened in the default browser if ``open_browser``."""
    url = login_url(client, run_dirs)
    if open_browser:
        webbrowser.open(url)
    return url


def report(source: Path, output: Path) -> Path:
    """Write the report of ``source`` (a run directory or a vault) to ``output``."""
    return write_report(source, output)
