"""An agent's key-value memory: a local replica of durable state.

A write is journaled first and applied locally only once it is durable::

    agent code ── memory.set(k, v) ──► journal("memory_set", {"key": k, "value": v})
                                          │  in the runtime: wal_entry ─► supervisor
                                          │  ─► WAL fsync ─► wal_ack; returns after the ack
                                          ▼
                                       replica.apply("memory_set", {...})
    agent code ◄── memory.get(k) ──────── replica (packed bytes, unpacked on read)

The replica keeps each value as its MessagePack bytes: a ``get`` returns a
fresh copy, so mutating it cannot change memory behind the journal's back,
and a value reads back exactly as it will after a restore (tuples come
back as lists).

Operations journaled (docs/design.md, "WAL operations"): ``memory_set {key, value}`` and
``memory_delete {key}``. A checkpoint stores the replica under
``agent_state["kv"]``.

:class:`Memory` is also the front door to the agent's other memories, each
a store of its own: ``remember``/``recall``/``search``/``forget``
(:mod:`project_o.agent.semantic`) and ``blocks``
(:mod:`project_o.agent.blocks`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Final

import msgpack

from project_o.agent.blocks import Blocks, BlockStore
from project_o.agent.semantic import Hit, SemanticMemory, SemanticStore
from project_o.agent.store import APPLIED, AsyncDurableWrite
from project_o.errors import InvalidArgument
from project_o.wire import ensure_packable

__all__ = [
    "MEMORY_DELETE",
    "MEMORY_OPERATIONS",
    "MEMORY_SET",
    "DurableWrite",
    "KVReplica",
    "Memory",
]

MEMORY_SET: Final = "memory_set"
MEMORY_DELETE: Final = "memory_delete"
#: the WAL operations this module knows how to apply
MEMORY_OPERATIONS: Final = frozenset({MEMORY_SET, MEMORY_DELETE})

from project_o.agent.store import DurableWrite  # re-exported; after the constants on purpose


def _pack(value: Any) -> bytes:
    return msgpack.packb(value, use_bin_type=True)  # type: ignore[no-any-return]


def _unpack(packed: bytes) -> Any:
    return msgpack.unpackb(packed, raw=False)


class KVReplica:
    """The key-value state itself: applies journaled operations, answers reads.

    A :class:`~project_o.agent.store.Store`: checkpointed under
    ``agent_state["kv"]``.
    """

    name: Final = "kv"
    section: Final = "agent_state"
    operations: Final = MEMORY_OPERATIONS

    def __init__(self) -> None:
        self._values: dict[str, bytes] = {}

    def apply(self, operation: str, data: Mapping[str, Any]) -> None:
        """Apply one journaled memory operation.

        Raises InvalidArgument for an operation that is not a memory write
        or data without the fields it needs.
        """
        if operation not in MEMORY_OPERATIONS:
            raise InvalidArgument(
                f"{operation!r} is not a memory operation; expected one of "
                f"{sorted(MEMORY_OPERATIONS)}"
            )
        key = _check_key(data.get("key") if isinstance(data, Mapping) else None)
        if operation == MEMORY_DELETE:
            self._values.pop(key, None)
        elif "value" not in data:
            raise InvalidArgument(f"memory_set of {key!r} carries no 'value'")
        else:
            self._values[key] = _pack(data["value"])

    def get(self, key: str, default: Any = None) -> Any:
        """The value stored under ``key`` (a fresh copy), or ``default``."""
        packed = self._values.get(key)
        return default if packed is None else _unpack(packed)

    def __contains__(self, key: object) -> bool:
        return key in self._values

    def __len__(self) -> int:
        return len(self._values)

    def keys(self) -> list[str]:
        """Every key, in insertion order."""
        return list(self._values)

    def snapshot(self) -> dict[str, Any]:
        """The whole store as plain values (what a checkpoint keeps under ``kv``)."""
        return {key: _unpack(packed) for key, packed in self._values.items()}

    def load(self, snapshot: Mapping[str, Any]) -> None:
        """Replace the store with ``snapshot`` (as :meth:`snapshot` returned it)."""
        if not isinstance(snapshot, Mapping):
            raise InvalidArgument(f"a kv snapshot must be a map, got {type(snapshot).__name__}")
        self._values = {_check_key(key): _pack(value) for key, value in snapshot.items()}


class Memory:
    """What agent code sees as ``ctx.memory``: reads from the replica, writes journaled.

    ``set`` and ``delete`` return only after ``journal`` made the write
    durable; then the replica applies it. If the journal raises, the
    replica is unchanged. The same holds for ``remember``, ``forget`` and
    every ``blocks`` write.

    ``semantic`` and ``blocks`` are the stores behind those; when not given,
    fresh ones are made (register :attr:`stores` with the agent's
    StateBook so they are checkpointed: AgentKit does).

    An ``async def`` handler writes with the awaitable forms (``aset``,
    ``adelete``, ``aremember``, ``aforget``): they journal through
    ``ajournal`` (the runtime's, when it serves concurrent requests), so the
    event loop goes on serving other requests while the write is made
    durable. Without ``ajournal`` they call ``journal``. Reads are local and
    have no awaitable form.
    """

    def __init__(
        self,
        replica: KVReplica,
        journal: DurableWrite,
        *,
        semantic: SemanticStore | None = None,
        blocks: BlockStore | None = None,
        ajournal: AsyncDurableWrite | None = None,
    ) -> None:
        self._replica = replica
        self._journal = journal
        self._ajournal = ajournal
        # "is None", not "or": an empty store is falsy (it has a length)
        self._semantic = SemanticMemory(SemanticStore() if semantic is None else semantic, journal,
                                        ajournal=ajournal)
        self._blocks = Blocks(BlockStore() if blocks is None else blocks, journal)

    def set(self, key: str, value: Any) -> None:
        """Durably store ``value`` (JSON-like: dict/list/str/int/float/bool/None/bytes)."""
        data = {"key": _check_key(key), "value": value}
        ensure_packable(value, f"memory value for {key!r}")
        self._write(MEMORY_SET, data)

    def get(self, key: str, default: Any = None) -> Any:
        """The value stored under ``key``, or ``default``; a copy, safe to mutate."""
        return self._replica.get(_check_key(key), default)

    def delete(self, key: str) -> None:
        """Durably remove ``key`` (removing a missing key is not an error)."""
        self._write(MEMORY_DELETE, {"key": _check_key(key)})

    def keys(self) -> list[str]:
        """Every stored key, in insertion order."""
        return self._replica.keys()

    def __contains__(self, key: object) -> bool:
        return key in self._replica

    def __len__(self) -> int:
        return len(self._replica)

    def __iter__(self) -> Iterator[str]:
        return iter(self._replica.keys())

    async def aset(self, key: str, value: Any) -> None:
        """:meth:`set`, awaitable: durable (and applied) when it returns."""
        data = {"key": _check_key(key), "value": value}
        ensure_packable(value, f"memory value for {key!r}")
        await self._awrite(MEMORY_SET, data)

    async def adelete(self, key: str) -> None:
        """:meth:`delete`, awaitable."""
        await self._awrite(MEMORY_DELETE, {"key": _check_key(key)})

    async def aremember(self, text: str, **metadata: Any) -> str:
        """:meth:`remember`, awaitable; returns the memory's id."""
        return await self._semantic.aremember(text, **metadata)

    async def aforget(self, memory_id: str) -> bool:
        """:meth:`forget`, awaitable."""
        return await self._semantic.aforget(memory_id)

    async def _awrite(self, operation: str, data: dict[str, Any]) -> None:
        if self._ajournal is None:
            self._write(operation, data)
        elif await self._ajournal(operation, data) is not APPLIED:
            self._replica.apply(operation, data)

    def _write(self, operation: str, data: dict[str, Any]) -> None:
        if self._journal(operation, data) is not APPLIED:
            self._replica.apply(operation, data)

    # -- semantic memory (project_o.agent.semantic) ---------------------

    def remember(self, text: str, **metadata: Any) -> str:
        """Durably remember ``text`` (with JSON-like ``metadata``); return its id."""
        return self._semantic.remember(text, **metadata)

    def recall(self, query: str, k: int = 5, where: dict[str, Any] | None = None) -> list[Hit]:
        """The ``k`` memories closest in meaning to ``query``, best first.

        ``where`` keeps only memories whose metadata equals each of its items.
        """
        return self._semantic.recall(query, k, where)

    def search(self, keywords: str, k: int = 5, where: dict[str, Any] | None = None) -> list[Hit]:
        """The ``k`` memories that best match ``keywords`` (BM25 over words; no vectors)."""
        return self._semantic.search(keywords, k, where)

    def forget(self, memory_id: str) -> bool:
        """Durably forget memory ``memory_id``; False if there is no such memory."""
        return self._semantic.forget(memory_id)

    @property
    def semantic(self) -> SemanticMemory:
        """The semantic memory itself (``get(id)``, ``len``)."""
        return self._semantic

    @property
    def blocks(self) -> Blocks:
        """Named, size-limited text blocks rendered into prompts (Letta-style)."""
        return self._blocks

    @property
    def stores(self) -> tuple[KVReplica, SemanticStore, BlockStore]:
        """Every store behind this memory, to register with a StateBook."""
        return (self._replica, self._semantic.store, self._blocks.store)


def _check_key(key: object) -> str:
    if not isinstance(key, str) or not key:
        raise InvalidArgument(f"memory keys must be non-empty str, got {key!r}")
    return key
