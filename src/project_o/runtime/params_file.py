"""The params file: a version's evolvable param values, materialized beside its sources.

An agent directory holds its ``.py`` sources and, when the version
overrides any ``agent.param(...)`` default, :data:`PARAMS_FILE` (a JSON
object, ``{name: value}``). The zygote reads it when it loads the agent;
evolution writes it when it materializes a genome
(:meth:`project_o.evolution.genome.Genome.write_to`). It lives here, in
the runtime's layer, because the runtime reads it and must not import
evolution (see "Layers" in docs/design.md).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from project_o.errors import InvalidArgument

__all__ = ["PARAMS_FILE", "params_file_for", "read_params"]

#: materialized params, beside the sources (a JSON object); not a ``.py``, so never a source
PARAMS_FILE = "project_o_params.json"


def params_file_for(agent: str | Path) -> Path:
    """Where the params of the agent at ``agent`` are materialized."""
    path = Path(agent)
    return (path if path.is_dir() else path.parent) / PARAMS_FILE


def read_params(agent: str | Path) -> dict[str, Any]:
    """The materialized params beside ``agent``; ``{}`` when there are none."""
    target = params_file_for(agent)
    if not target.exists():
        return {}
    try:
        value = json.loads(target.read_text())
    except ValueError as exc:
        raise InvalidArgument(f"{target} is not valid JSON ({exc}); delete or fix it") from exc
    if not isinstance(value, dict):
        raise InvalidArgument(f"{target} must hold a JSON object, got {type(value).__name__}")
    return value
