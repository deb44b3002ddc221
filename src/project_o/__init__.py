"""Project O: a crash-proof runtime for self-evolving AI agents.

``from project_o import Agent`` is the entry point for agent authors. It is
resolved lazily so that processes which must stay small and never touch
agent machinery (the heart, the gateway) do not import it by accident.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from project_o.errors import ProjectOError

if TYPE_CHECKING:
    from project_o.agent import Agent

__all__ = ["Agent", "ProjectOError", "__version__"]

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "Agent":
        from project_o.agent import Agent

        globals()["Agent"] = Agent  # resolved once; later lookups are plain attributes
        return Agent
    raise AttributeError(f"module 'project_o' has no attribute {name!r}")
