"""The process tree heart → supervisor → zygotes → instances, from ``GET /v1/status``.

The status names the heart, the supervisor and the serving instances
(main, standby). The rest of the tree — which zygote forked which
instance, and a candidate's own zygote and instances during a shadow or
canary — is read from ``/proc`` through psutil: the supervisor's
children are zygotes (and short-lived helpers), their children instances.
Nothing is asked of the zygotes, so drawing the tree costs the agent nothing.
"""

from __future__ import annotations

import time
from typing import Any

import psutil

__all__ = ["process_tree"]


def process_tree(status: dict[str, Any], now: float | None = None,
                 candidate: str | None = None) -> dict[str, Any]:
    """``{"heart", "supervisor", "zygotes": [{"pid", "instances": [...]}]}``.

    ``candidate``: the version a running experiment tries, the likely
    version of a zygote whose instances the status does not describe.
    """
    now = time.time() if now is None else now
    known = {i.get("pid"): _instance(i, now) for i in status.get("instances", [])}
    supervisor = status.get("supervisor_pid")
    zygotes: dict[int | None, list[dict[str, Any]]] = {}
    for pid, instance in known.items():
        zygotes.setdefault(_parent(pid), []).append(instance)
    for zygote, children in _forks(supervisor).items():
        found = zygotes.setdefault(zygote, [])
        found.extend(_unlisted(pid) for pid in children if pid not in known)
    return {
        "heart": {"pid": status.get("heart_pid"), "role": "heart"},
        "supervisor": {"pid": supervisor, "role": "supervisor",
                       "rss_bytes": _rss(supervisor), "restarts": status.get("restarts", 0),
                       "version": status.get("version")},
        "zygotes": [_zygote(pid, found, candidate)
                    for pid, found in sorted(zygotes.items(), key=lambda kv: kv[0] or 0)],
    }


def _zygote(pid: int | None, instances: list[dict[str, Any]],
            candidate: str | None) -> dict[str, Any]:
    versions = {i.get("version") for i in instances if i.get("version")}
    version = versions.pop() if len(versions) == 1 else None
    if version is None and instances:
        version = candidate
        for instance in instances:
            instance["version"] = instance.get("version") or candidate
    return {"pid": pid, "role": "zygote", "rss_bytes": _rss(pid), "version": version,
            "instances": instances}


def _instance(instance: dict[str, Any], now: float) -> dict[str, Any]:
    beat = instance.get("last_heartbeat")
    return {
        "role": instance.get("role"), "pid": instance.get("pid"),
        "id": instance.get("instance_id"), "version": instance.get("version"),
        "restarts": instance.get("restarts", 0),
        "heartbeat_age_s": None if not beat else round(max(0.0, now - beat), 2),
        "rss_bytes": instance.get("rss_bytes"), "in_flight": instance.get("in_flight", 0),
    }


def _unlisted(pid: int) -> dict[str, Any]:
    """An instance the status does not describe: a candidate's (shadow, canary, check)."""
    return {"role": "candidate", "pid": pid, "id": None, "version": None, "restarts": None,
            "heartbeat_age_s": None, "rss_bytes": _rss(pid), "in_flight": None}


def _forks(supervisor: Any) -> dict[int, list[int]]:
    """The supervisor's children that have children: zygote pid → instance pids."""
    if not isinstance(supervisor, int):
        return {}
    try:
        children = psutil.Process(supervisor).children()
    except psutil.Error:
        return {}
    forks: dict[int, list[int]] = {}
    for child in children:
        try:
            grandchildren = [p.pid for p in child.children()]
        except psutil.Error:
            continue  # gone between the two reads
        if grandchildren:
            forks[child.pid] = grandchildren
    return forks


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
