"""The instance program as the zygote loads it, before any instance is forked."""

from __future__ import annotations

from project_o.agent.embedding import DEFAULT_DIM
from project_o.agent.vectors import VectorIndex, code_planes
from project_o.runtime import instance_program
from project_o.supervisor.options import builtin_agent_path


def test_loading_makes_the_memory_projections_its_instances_share() -> None:
    code_planes.cache_clear()
    program = instance_program.load(["--agent", str(builtin_agent_path()), "--version", "v1"])
    assert program.hello()["version"] == "v1"
    made = code_planes.cache_info()
    assert made.currsize == 1
    # A store made afterwards (in a forked instance) uses that copy, not one of its own.
    assert VectorIndex(DEFAULT_DIM)._planes is code_planes(DEFAULT_DIM)
    assert code_planes.cache_info().misses == made.misses
