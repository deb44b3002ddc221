"""The process tree heart → supervisor → zygotes → instances, from ``GET /v1/status``.

The status names the heart, the supervisor and each instance; which
zygote forked an instance is its parent process, read from ``/proc``
through psutil (the supervisor never asks the zygote, so this costs the
agent nothing).
"""

from __future__ import annotations

import time
from typing import Any

import psutil

__all__ = ["process_tree"]


def process_tree(status: dict[str, Any], now: float | None = None) -> dict[str, Any]:
    """``{"heart", "supervisor", "zygotes": [{"pid", "instances": [...]}]}``."""
    now = time.time() if now is None else now
    zygotes: dict[int | None, list[dict[str, Any]]] = {}
    for instance in status.get("instances", []):
        zygotes.setdefault(_parent(instance.get("pid")), []).append(_instance(instance, now))
    supervisor = status.get("supervisor_pid")
    return {
        "heart": {"pid": status.get("heart_pid"), "role": "heart"},
        "supervisor": {"pid": supervisor, "role": "supervisor",
                       "rss_bytes": _rss(supervisor), "restarts": status.get("restarts", 0),
                       "version": status.get("version")},
        "zygotes": [{"pid": pid, "role": "zygote", "rss_bytes": _rss(pid),
                     "version": _common_version(found), "instances": found}
                    for pid, found in sorted(zygotes.items(), key=lambda kv: kv[0] or 0)],
    }


def _instance(instance: dict[str, Any], now: float) -> dict[str, Any]:
    beat = instance.get("last_heartbeat")
    return {
        "role": instance.get("role"), "pid": instance.get("pid"),
        "id": instance.get("instance_id"), "version": instance.get("version"),
        "restarts": instance.get("restarts", 0),
        "heartbeat_age_s": None if not beat else round(max(0.0, now - beat), 2),
        "rss_bytes": instance.get("rss_bytes"), "in_flight": instance.get("in_flight", 0),
    }


def _common_version(instances: list[dict[str, Any]]) -> str | None:
    versions = {i.get("version") for i in instances}
    return versions.pop() if len(versions) == 1 else None


def _parent(pid: Any) -> int | None:
    if not isinstance(pid, int):
        return None
    try:
        return int(psutil.Process(pid).ppid())
    except psutil.Error:
        return None  # gone between the status and now


def _rss(pid: Any) -> int | None:
    if not isinstance(pid, int):
        return None
    try:
        return int(psutil.Process(pid).memory_info().rss)
    except psutil.Error:
        return None
