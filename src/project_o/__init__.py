"""Project O: a crash-proof runtime for self-evolving AI agents."""

from __future__ import annotations

from project_o.agent import Agent
from project_o.errors import ProjectOError

__all__ = ["Agent", "ProjectOError", "__version__"]

__version__ = "0.1.0"
