"""The zygote program whose children are agent instances (the zygote's default).

``python -m project_o.runtime.zygote --control-fd N --agent PATH --version V``

Loaded once in the zygote: the agent imported, its params (the genes a
version carries beside its sources) read. Each fork request names the
instance::

    fork {id, role, instance_id, limits, config}   ──►  run_instance(fd 3, ...)
    exited {..., instance_id}                       ◄──  when it ends
"""

from __future__ import annotations

import argparse
import concurrent.futures.thread  # noqa: F401 - the instance's offload pool, before the fork
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from project_o.agent.embedding import DEFAULT_DIM
from project_o.agent.vectors import code_planes
from project_o.errors import InvalidArgument
from project_o.runtime.child import ChildPlan
from project_o.runtime.config import InstanceConfig
from project_o.runtime.instance import run_instance
from project_o.runtime.loader import load_agent
from project_o.runtime.params_file import read_params
from project_o.runtime.sandbox import Limits

__all__ = ["InstanceProgram", "load"]


@dataclass(frozen=True)
class _Instance:
    role: str
    instance_id: str
    config: InstanceConfig


class InstanceProgram:
    """Forks instances of one agent version."""

    def __init__(self, agent: Any, version: str, params: dict[str, Any] | None) -> None:
        self._agent = agent
        self._version = version
        self._params = params or None

    def hello(self) -> dict[str, Any]:
        """The version served and the agent's name."""
        return {"version": self._version, "agent": self._agent.name}

    def plan(self, request: dict[str, Any]) -> ChildPlan:
        """Check the instance's role, id, limits and config."""
        instance = _Instance(_text(request, "role"), _text(request, "instance_id"),
                             InstanceConfig.from_dict(request.get("config")))
        return ChildPlan(Limits.from_dict(request.get("limits")), instance,
                         report={"instance_id": instance.instance_id})

    def run(self, plan: ChildPlan, channel_fd: int) -> int:
        """Serve as the instance until shutdown or the supervisor's end."""
        instance: _Instance = plan.work
        return run_instance(
            channel_fd,
            self._agent,
            params=self._params,
            version=self._version,
            role=instance.role,
            instance_id=instance.instance_id,
            config=instance.config,
        )


def load(argv: Sequence[str]) -> InstanceProgram:
    """Import the agent named on the command line (``--agent PATH --version V``)."""
    args = _arguments(argv)  # parsed first: the parser is freed before the import
    agent = load_agent(args.agent)
    _make_before_fork()
    # A version's genes (written beside its sources by Genome.write_to).
    return InstanceProgram(agent, args.version, read_params(args.agent))


def _make_before_fork() -> None:
    """Make here what every instance would otherwise make for itself after the fork.

    Pages the zygote fills before it forks are shared copy-on-write by all
    its instances (PSS splits them between the sharers); made in each
    child, they would be private to it. Here: the semantic memory's SimHash
    projections at the default embedding size (read-only, see
    project_o.agent.vectors).
    """
    code_planes(DEFAULT_DIM)


def _arguments(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="instance program")
    parser.add_argument("--agent", required=True, help="agent .py file or package directory")
    parser.add_argument("--version", required=True, help="the version this zygote serves")
    return parser.parse_args(argv)


def _text(request: dict[str, Any], key: str) -> str:
    value = request.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidArgument(f"fork request needs a non-empty str {key!r}, got {value!r}")
    return value
