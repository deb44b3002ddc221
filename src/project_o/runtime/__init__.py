"""The instance runtime: zygotes, sandboxed instances, and the supervisor's handle on them.

::

    supervisor (asyncio)                 zygote (agent imported once)        instance
    ZygoteHandle ══ control socket ═══►  fork ───────────────────────────►  sandbox, then
      .fork() ───── fork + SCM_RIGHTS ─►                                     Instance.run()
    ForkedInstance.reader/.writer ══════════ instance socket (fd 3) ════════►  hello, restore,
                                                                               heartbeats, requests

Modules: ``zygote_client`` (the parent's side, never imports agent
code), ``zygote`` (the forking process: one for every kind of sandboxed
child, its ``enter_child`` the one place the sandbox is applied),
``child`` (what a zygote's children run: the program protocol),
``instance_program`` (the program whose children are instances),
``confine`` (the sandbox's layers, applied to the zygote before agent code
is imported; its ``cgroups`` are made by the parent), ``sandbox`` /
``procctl`` (per-child isolation), ``instance`` / ``channel`` / ``state`` /
``config`` (the instance's loop), ``loader`` (agent code -> Agent).

Names are resolved lazily, so the supervisor importing the client does
not import the instance side, and the zygote does not import asyncio.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from project_o.runtime.config import InstanceConfig
    from project_o.runtime.instance import Instance
    from project_o.runtime.loader import load_agent
    from project_o.runtime.sandbox import Limits, cgroup_available, scrubbed_env
    from project_o.runtime.zygote_client import ExitStatus, ForkedInstance, ZygoteHandle

__all__ = [
    "ExitStatus",
    "ForkedInstance",
    "Instance",
    "InstanceConfig",
    "Limits",
    "ZygoteHandle",
    "cgroup_available",
    "load_agent",
    "scrubbed_env",
]

_HOMES = {
    "ExitStatus": "project_o.runtime.zygote_client",
    "ForkedInstance": "project_o.runtime.zygote_client",
    "ZygoteHandle": "project_o.runtime.zygote_client",
    "Instance": "project_o.runtime.instance",
    "InstanceConfig": "project_o.runtime.config",
    "Limits": "project_o.runtime.sandbox",
    "cgroup_available": "project_o.runtime.sandbox",
    "scrubbed_env": "project_o.runtime.sandbox",
    "load_agent": "project_o.runtime.loader",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'project_o.runtime' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)
