"""Durable stores: the pieces an agent's state is made of.

Every piece of agent state that must survive a crash (the key-value
memory, semantic memories, conversation history, memory blocks, workflow
progress, LLM history...) is a :class:`Store`. A store changes *only* by
applying journaled operations, so the same code path serves a live write,
a WAL replay after a crash and a standby tailing the WAL::

    facade (ctx.memory.remember...) ── journal(op, data) ──► WAL (durable)
                                     └─ store.apply(op, data)   after the ack

    checkpoint payload[section][name] ◄── store.snapshot()
    restore:  store.load(snapshot), then store.apply(...) for each later entry

:class:`StateBook` holds the stores of one agent, routes operations to the
store that owns them and assembles the five-key checkpoint payload.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Final, Protocol, runtime_checkable

from project_o.errors import InvalidArgument
from project_o.vault.applied import APPLIED

__all__ = ["APPLIED", "PAYLOAD_SECTIONS", "AsyncDurableWrite", "DurableWrite", "StateBook",
           "Store"]


#: Makes one write durable; returns only when it is (or raises). It returns
#: :data:`APPLIED` if it applied the write too, anything else if the caller must.
DurableWrite = Callable[[str, dict[str, Any]], object]
#: The awaitable form of :data:`DurableWrite` (async handlers, ``await ctx.memory.aset``).
AsyncDurableWrite = Callable[[str, dict[str, Any]], Awaitable[object]]

#: the checkpoint payload's keys (project_o.vault.checkpoint.PAYLOAD_KEYS)
PAYLOAD_SECTIONS: Final = ("agent_state", "memory_blocks", "tool_registry", "llm_history",
                           "metrics")


@runtime_checkable
class Store(Protocol):
    """One durable piece of agent state.

    ``section`` is the checkpoint payload key it lives under and ``name``
    its key inside that section; ``operations`` are the WAL operation
    names it applies (unique across stores).
    """

    @property
    def name(self) -> str: ...
    @property
    def section(self) -> str: ...
    @property
    def operations(self) -> frozenset[str]: ...

    def apply(self, operation: str, data: Mapping[str, Any]) -> None: ...
    def snapshot(self) -> Any: ...
    def load(self, snapshot: Any) -> None: ...


class StateBook:
    """The stores of one agent, plus cumulative counters kept in ``metrics``."""

    def __init__(self, stores: Iterable[Store] = ()) -> None:
        self._stores: dict[tuple[str, str], Store] = {}
        self._owners: dict[str, Store] = {}
        self._unowned: dict[str, dict[str, Any]] = {s: {} for s in PAYLOAD_SECTIONS}
        self.metrics: dict[str, Any] = {}
        for store in stores:
            self.register(store)

    def register(self, store: Store) -> None:
        """Add a store; its operations must not clash with another's."""
        if store.section not in PAYLOAD_SECTIONS or store.section == "metrics":
            raise InvalidArgument(f"store {store.name!r}: section must be one of "
                                  f"{PAYLOAD_SECTIONS[:-1]}, got {store.section!r}")
        clash = store.operations & self._owners.keys()
        if clash or (store.section, store.name) in self._stores:
            raise InvalidArgument(f"store {store.name!r} clashes with a registered store "
                                  f"(operations {sorted(clash)})")
        self._stores[(store.section, store.name)] = store
        self._owners.update(dict.fromkeys(store.operations, store))
        pending = self._unowned[store.section].pop(store.name, None)
        if pending is not None:
            store.load(pending)

    def owns(self, operation: str) -> bool:
        """Whether some store applies ``operation``."""
        return operation in self._owners

    def locked(self, operation: str) -> bool:
        """Whether the store of ``operation`` has a ``lock`` its writers hold while they
        journal (read-modify-journal-apply): only the writing thread may apply it then."""
        return hasattr(self._owners.get(operation), "lock")

    def apply(self, operation: str, data: Mapping[str, Any]) -> None:
        """Apply one journaled operation to the store that owns it."""
        store = self._owners.get(operation)
        if store is None:
            raise InvalidArgument(f"no store applies the operation {operation!r}")
        store.apply(operation, data)

    def load(self, payload: Mapping[str, Any]) -> None:
        """Adopt a checkpoint payload; sections no store claims are kept as they are."""
        for section in PAYLOAD_SECTIONS[:-1]:
            content = payload.get(section) or {}
            if not isinstance(content, Mapping):
                content = {}  # older payloads kept a list here (llm_history): start clean
            for name, snapshot in content.items():
                store = self._stores.get((section, name))
                if store is None:
                    self._unowned[section][name] = snapshot
                else:
                    store.load(snapshot)
        metrics = payload.get("metrics") or {}
        self.metrics = dict(metrics) if isinstance(metrics, Mapping) else {}

    def count(self, name: str, by: int = 1) -> None:
        """Add to a cumulative counter kept in the checkpoint's ``metrics``."""
        current = self.metrics.get(name, 0)
        self.metrics[name] = (current if isinstance(current, int) else 0) + by

    def payload(self) -> dict[str, Any]:
        """The five-key checkpoint payload for the current state."""
        payload: dict[str, Any] = {s: dict(self._unowned[s]) for s in PAYLOAD_SECTIONS[:-1]}
        for (section, name), store in self._stores.items():
            payload[section][name] = store.snapshot()
        payload["metrics"] = dict(self.metrics)
        return payload
