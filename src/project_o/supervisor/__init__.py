"""The supervision layer: the processes that keep agents alive.

The supervision tree of a running Project O (``GET /v1/status`` shows it live)::

    project-o run
     └─ heart             restarts the supervisor if it dies after it was up (Erlang's heart)
         └─ supervisor    SupervisionTree, rest_for_one, no restarts of its own: a part
             │            that fails escalates to the heart (it never imports agent code)
             ├─ vault     WAL writer, checkpoint store, catalog (SQLite)
             ├─ agent     AgentHost, with its own tree (AgentTree, one_for_one): when
             │   │        that tree gives up, the host falls back to the previous good
             │   │        version or backs off and starts a new one
             │   ├─ zygote     agent code pre-imported, gc.freeze(), forks:
             │   ├─ main       serves traffic; restarted by promoting the standby
             │   └─ standby    warm, tails the WAL, takes over at once
             ├─ evolution EvolutionControl: experiments, shadow / canary / rollback decisions
             └─ gateway   HTTP + WebSocket API, metrics (started last, stopped first)

Modules:

* :mod:`~project_o.supervisor.spec` -- ``ChildSpec``, the ``Child`` protocol, ``ExitReason``
* :mod:`~project_o.supervisor.intensity` -- restart intensity (max restarts in a period)
* :mod:`~project_o.supervisor.tree` -- ``SupervisionTree``: OTP strategies, shutdown, escalation
* :mod:`~project_o.supervisor.heart` -- the heart process (``python -m project_o.supervisor.heart``)
* :mod:`~project_o.supervisor.startup` -- a failed start: one message, an exit status
* :mod:`~project_o.supervisor.service` -- the supervisor: its tree and the gateway's service
* :mod:`~project_o.supervisor.agent_host` -- the agent's node, put together from its parts
* :mod:`~project_o.supervisor.agent_tree` -- the agent's zygote, main and standby as tree children
* :mod:`~project_o.supervisor.routing` -- ``Router``: where each request goes (main, mirror, split)
* :mod:`~project_o.supervisor.experiment_run` -- ``ExperimentRun``: one experiment, one coroutine
* :mod:`~project_o.supervisor.evolution_control` -- who may start experiments; the experiment API

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
