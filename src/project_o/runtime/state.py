"""What an instance holds: its memory replica plus the rest of the checkpoint payload.

A checkpoint payload (project_o.vault.checkpoint) has five keys; the
instance owns ``agent_state["kv"]`` and the counters under ``metrics``, and
passes the others through untouched, so a restore followed by a
checkpoint never loses what a later layer (tools, LLM history) stored::

    payload ─load─► agent_state["kv"] ─► KVReplica ─────────┐
                    agent_state (other keys), memory_blocks,  ├─payload()─► checkpoint
                    tool_registry, llm_history ─ kept as is ──┤
                    metrics ─► counters (+= this instance's) ─┘
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from project_o.agent.kv import KVReplica
from project_o.errors import InvalidArgument

__all__ = ["KV_KEY", "InstanceState"]

#: where the key-value memory lives inside ``agent_state``
KV_KEY: Final = "kv"
_PASSTHROUGH: Final = ("memory_blocks", "tool_registry", "llm_history")


class InstanceState:
    """The replica and the checkpoint payload around it."""

    def __init__(self) -> None:
        self.replica = KVReplica()
        self._agent_state: dict[str, Any] = {}
        self._other: dict[str, Any] = {"memory_blocks": {}, "tool_registry": {}, "llm_history": []}
        self.metrics: dict[str, Any] = {}

    def load(self, payload: Mapping[str, Any]) -> None:
        """Adopt a checkpoint payload (as CheckpointStore.read returns it)."""
        agent_state = payload.get("agent_state") or {}
        if not isinstance(agent_state, Mapping):
            raise InvalidArgument(f"agent_state must be a map, got {type(agent_state).__name__}")
        self._agent_state = {k: v for k, v in agent_state.items() if k != KV_KEY}
        self.replica.load(agent_state.get(KV_KEY) or {})
        for key in _PASSTHROUGH:
            if key in payload:
                self._other[key] = payload[key]
        metrics = payload.get("metrics") or {}
        self.metrics = dict(metrics) if isinstance(metrics, Mapping) else {}

    def count(self, name: str, by: int = 1) -> None:
        """Add to a cumulative counter kept in the checkpoint's ``metrics``."""
        current = self.metrics.get(name, 0)
        self.metrics[name] = (current if isinstance(current, int) else 0) + by

    def payload(self) -> dict[str, Any]:
        """The five-key checkpoint payload for the current state."""
        return {
            "agent_state": {**self._agent_state, KV_KEY: self.replica.snapshot()},
            **self._other,
            "metrics": dict(self.metrics),
        }
