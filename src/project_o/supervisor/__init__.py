"""The supervision layer: the processes that keep agents alive.

The process tree of a running Project O::

    project-o run
     └─ heart                     restarts the supervisor if it dies (like Erlang's heart)
         └─ supervisor            asyncio; NEVER imports or evals agent code
             ├─ gateway           HTTP + WebSocket API, metrics, dashboard
             ├─ vault             WAL writer, checkpoint store, catalog (SQLite)
             ├─ health monitor    heartbeats, latency/error/memory telemetry
             ├─ arbiter           shadow / canary / rollback decisions, experiments
             └─ zygote per version    agent code pre-imported, gc.freeze(), forks:
                  ├─ main instance        serves traffic
                  ├─ standby instance     warm, tails the WAL, takes over on a crash
                  ├─ shadow / canary      candidate versions
                  └─ evaluators           population members during evolution

Modules:

* :mod:`~project_o.supervisor.spec` -- ``ChildSpec``, the ``Child`` protocol, ``ExitReason``
* :mod:`~project_o.supervisor.intensity` -- restart intensity (max restarts in a period)
* :mod:`~project_o.supervisor.tree` -- ``SupervisionTree``: OTP strategies, shutdown, escalation
* :mod:`~project_o.supervisor.process` -- ``ProcessChild`` / ``PidChild`` for OS processes
* :mod:`~project_o.supervisor.heart` -- the heart process (``python -m project_o.supervisor.heart``)

The heart imports nothing from this package (it runs as a plain script,
``heart.HEART_SCRIPT``); its names are loaded here on first use, so that
``python -m project_o.supervisor.heart`` does not import its module twice.
"""

from __future__ import annotations

from typing import Any

from project_o.supervisor.intensity import (
    DEFAULT_MAX_RESTARTS,
    DEFAULT_MAX_SECONDS,
    RestartIntensity,
)
from project_o.supervisor.process import PidChild, ProcessChild
from project_o.supervisor.spec import (
    DEFAULT_SHUTDOWN_MS,
    Child,
    ChildInfo,
    ChildSpec,
    ChildStatus,
    EventKind,
    ExitReason,
    Restart,
    Shutdown,
    Strategy,
)
from project_o.supervisor.tree import EscalateCallback, EventCallback, SupervisionTree

__all__ = [
    "DEFAULT_MAX_RESTARTS",
    "DEFAULT_MAX_SECONDS",
    "DEFAULT_SHUTDOWN_MS",
    "HEART_PID_ENV",
    "HEART_SCRIPT",
    "Child",
    "ChildInfo",
    "ChildSpec",
    "ChildStatus",
    "EscalateCallback",
    "EventCallback",
    "EventKind",
    "ExitReason",
    "PidChild",
    "ProcessChild",
    "Restart",
    "RestartIntensity",
    "Shutdown",
    "Strategy",
    "SupervisionTree",
    "read_status",
    "run_heart",
]

_HEART_NAMES = frozenset({"HEART_PID_ENV", "HEART_SCRIPT", "read_status", "run_heart"})


def __getattr__(name: str) -> Any:
    # Lazy: importing heart here would make `python -m ...heart` run a second copy.
    if name in _HEART_NAMES:
        from project_o.supervisor import heart

        return getattr(heart, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
