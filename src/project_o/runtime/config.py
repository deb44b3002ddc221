"""What an instance is told at fork time (the fork request's ``config``).

::

    fork {..., "config": {"heartbeat_interval": 1.0,     seconds between beats
                          "checkpoint_every": 1000,      acknowledged writes between
                                                         unsolicited checkpoints (0: never)
                          "max_frame_size": 67108864,    largest frame either way
                          "stub_side_effects": false,    a shadow: tools declared with
                                                         side_effects=True are not run
                          "llm": {"model", "max_tool_steps"} | null}
                                                         ctx.llm's model; the supervisor
                                                         calls it (never its key or URL here)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, Final

from project_o.errors import InvalidArgument
from project_o.wire import DEFAULT_MAX_FRAME_SIZE

__all__ = ["DEFAULT_CHECKPOINT_EVERY", "DEFAULT_HEARTBEAT_INTERVAL", "InstanceConfig"]

#: one heartbeat a second (the supervisor calls an instance hung after five silent
#: seconds: a beat or two late under load is not a hang)
DEFAULT_HEARTBEAT_INTERVAL: Final = 1.0
#: an unsolicited checkpoint every thousand acknowledged writes keeps WAL
#: replay on restart short without checkpointing on every request
DEFAULT_CHECKPOINT_EVERY: Final = 1000
#: what an instance is told of the LLM: no endpoint, no key
_LLM_SETTINGS: Final = frozenset({"model", "max_tool_steps"})


@dataclass(frozen=True)
class InstanceConfig:
    """Runtime settings of one instance."""

    heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL
    checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY
    max_frame_size: int = DEFAULT_MAX_FRAME_SIZE
    #: a shadow's answers are never returned, so its side effects must not happen either
    stub_side_effects: bool = False
    #: ``ctx.llm``'s settings (``model``, ``max_tool_steps``); None: no LLM
    llm: dict[str, Any] | None = None

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> InstanceConfig:
        """Build from a fork request's ``config``; unknown keys or bad values raise."""
        values = dict(values or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InvalidArgument(
                f"unknown instance config {unknown}; known settings are {sorted(known)}"
            )
        config = cls(**values)
        config._check()
        return config

    def _check(self) -> None:
        interval = self.heartbeat_interval
        if isinstance(interval, bool) or not isinstance(interval, (int, float)) or interval <= 0:
            raise InvalidArgument(f"heartbeat_interval must be > 0 seconds, got {interval!r}")
        every = self.checkpoint_every
        if isinstance(every, bool) or not isinstance(every, int) or every < 0:
            raise InvalidArgument(f"checkpoint_every must be an int >= 0, got {every!r}")
        size = self.max_frame_size
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
            raise InvalidArgument(f"max_frame_size must be a positive int, got {size!r}")
        if not isinstance(self.stub_side_effects, bool):
            raise InvalidArgument(
                f"stub_side_effects must be a bool, got {self.stub_side_effects!r}")
        llm = self.llm
        if llm is not None and (not isinstance(llm, dict) or set(llm) - _LLM_SETTINGS):
            raise InvalidArgument(f"llm must be None or a map of {sorted(_LLM_SETTINGS)}, "
                                  f"got {llm!r}")

    def to_dict(self) -> dict[str, Any]:
        """The settings as a fork request carries them."""
        return asdict(self)
