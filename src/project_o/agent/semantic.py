"""Semantic memory: remember texts, recall them by meaning or by keywords.

::

    ctx.memory.remember("Alice likes teal", topic="people")
        │ id = "mem-<n>" chosen here, before journaling, so a replay makes the same one
        ▼
    journal("memory_remember", {id, text, metadata, created[, vector, embedder]})
        ▼                                   WAL: durable before anything changes
    SemanticStore.apply ─► row r:  ids[r]  texts[r]  metadata[r]  created[r]  alive[r]
                                   vector + SimHash code of row r  ◄── embedder.embed(text)
                                   keyword postings  (built on first search)
                                   metadata index    (built on first where=)

    recall(query, k, where)  ─► embed(query) ─► live rows that match where ─► top k by
                                cosine: exact up to 20k rows, SimHash then exact rescoring
                                above                               (see vectors.py)
    search(keywords, k)      ─► BM25 over the same rows            (see keyword.py)
    forget(id)               ─► journal("memory_forget", {id}) ─► row r dies

Replay embeds the journaled text again: the default embedder is
deterministic, so the vector is bit for bit the one the live store made.
For an embedder that is not (``deterministic = False``), the vector itself
is journaled and replay uses it.

A checkpoint (``agent_state["semantic"]``) holds the live rows with their
vectors (and codes) as raw bytes, so a restore does not re-embed; a snapshot
taken under another embedder is re-embedded on load. Forgotten rows keep
their slot until they outnumber the live ones, then the store compacts
(row order, and so every answer, is unchanged).
"""

from __future__ import annotations

import asyncio
import copy
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import msgpack
import numpy as np

from project_o.agent.embedding import Embedder, HashingEmbedder, check_vectors
from project_o.agent.keyword import KeywordIndex, terms
from project_o.agent.store import APPLIED, AsyncDurableWrite, DurableWrite
from project_o.agent.vectors import CODE_WORDS, VectorIndex, code_scheme, top_k
from project_o.errors import InvalidArgument
from project_o.wire import ensure_packable

__all__ = [
    "MAX_K",
    "MAX_TEXT_CHARS",
    "MEMORY_FORGET",
    "MEMORY_REMEMBER",
    "Hit",
    "SemanticMemory",
    "SemanticStore",
]

MEMORY_REMEMBER: Final = "memory_remember"
MEMORY_FORGET: Final = "memory_forget"
#: the snapshot layout this module writes (bump on an incompatible change)
SNAPSHOT_FORMAT: Final = 1
#: One memory is one fact or passage; longer texts recall poorly as one vector
#: and bloat every checkpoint. Split documents into chunks before remembering.
MAX_TEXT_CHARS: Final = 32_768
#: most hits one call returns
MAX_K: Final = 1000
#: compact once forgotten rows are at least this many *and* outnumber live ones,
#: so compaction's full copy is paid at most once per doubling of forgets
COMPACT_MIN_DEAD: Final = 1024
ID_PREFIX: Final = "mem-"


@dataclass(frozen=True, slots=True)
class Hit:
    """One remembered text found by a query.

    ``score``: cosine similarity for :meth:`SemanticMemory.recall` (-1..1),
    BM25 for :meth:`SemanticMemory.search` (>0, unbounded), 1.0 for
    :meth:`SemanticMemory.get`. ``created`` is the unix time it was remembered.
    """

    id: str
    text: str
    score: float
    metadata: dict[str, Any] = field(default_factory=dict)
    created: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-like view (what a handler can return)."""
        return {"id": self.id, "text": self.text, "score": self.score,
                "metadata": copy.deepcopy(self.metadata), "created": self.created}


class SemanticStore:
    """The remembered texts, their vectors and indexes; a durable Store."""

    name: Final = "semantic"
    section: Final = "agent_state"
    operations: Final = frozenset({MEMORY_REMEMBER, MEMORY_FORGET})

    def __init__(self, embedder: Embedder | None = None, *,
                 compact_min_dead: int = COMPACT_MIN_DEAD) -> None:
        self.embedder: Embedder = HashingEmbedder() if embedder is None else embedder
        self.compact_min_dead = compact_min_dead
        #: held by the facade around read-modify-journal-apply: a tool's worker
        #: thread may use memory too (see project_o.agent.toolbox)
        self.lock = threading.RLock()
        self._clear()

    def _clear(self) -> None:
        self._ids: list[str] = []
        self._texts: list[str] = []
        self._metadata: list[dict[str, Any]] = []
        self._created: list[float] = []
        self._row_of: dict[str, int] = {}
        self._alive = np.zeros(0, dtype=bool)
        self._vectors = VectorIndex(self.embedder.dim)
        self._keywords: KeywordIndex | None = None
        self._by_value: dict[tuple[str, Any], set[int]] | None = None
        self._next = 1

    # -- reads ------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._row_of)

    def __contains__(self, memory_id: object) -> bool:
        return memory_id in self._row_of

    def next_id(self) -> str:
        """The id the next remembered text gets."""
        return f"{ID_PREFIX}{self._next}"

    def ids(self) -> list[str]:
        """Every live memory id, oldest first."""
        return [self._ids[row] for row in np.flatnonzero(self._alive)]

    def get(self, memory_id: str) -> Hit | None:
        """The memory ``memory_id`` (score 1.0), or None."""
        row = self._row_of.get(memory_id)
        return None if row is None else self._hit(row, 1.0)

    def recall(self, query: np.ndarray, k: int, where: Mapping[str, Any] | None) -> list[Hit]:
        """The ``k`` live memories most similar to the unit vector ``query``."""
        rows, scores = self._vectors.search(query, k, self._allowed(where))
        return [self._hit(int(row), float(score)) for row, score in zip(rows, scores, strict=True)]

    def search(self, keywords: str, k: int, where: Mapping[str, Any] | None) -> list[Hit]:
        """The ``k`` live memories that best match ``keywords`` (BM25; no match, no hit)."""
        scores = self._keyword_index().search(terms(keywords), self._allowed(where))
        best = top_k(scores, min(k, int(np.count_nonzero(scores))))
        return [self._hit(int(row), float(scores[row])) for row in best]

    def _hit(self, row: int, score: float) -> Hit:
        return Hit(self._ids[row], self._texts[row], score,
                   copy.deepcopy(self._metadata[row]), self._created[row])

    def _allowed(self, where: Mapping[str, Any] | None) -> np.ndarray:
        """Live rows whose metadata equals every item of ``where``."""
        allowed = self._alive[: len(self._ids)].copy()
        for key, value in (where or {}).items():
            matching = np.zeros(len(allowed), dtype=bool)
            if _indexable(value):
                matching[list(self._value_index().get((key, _value_key(value)), ()))] = True
            else:  # a list or map: compare row by row (no index for those)
                for row in np.flatnonzero(allowed):
                    matching[row] = _equal(self._metadata[row].get(key, _MISSING), value)
            allowed &= matching
        return allowed

    # -- writes (journaled operations) -------------------------------------

    def apply(self, operation: str, data: Mapping[str, Any]) -> None:
        """Apply one journaled ``memory_remember`` or ``memory_forget``."""
        if not isinstance(data, Mapping):
            raise InvalidArgument(f"{operation} data must be a map, got {type(data).__name__}")
        if operation == MEMORY_REMEMBER:
            self._remember(data)
        elif operation == MEMORY_FORGET:
            self._forget(_field(data, "id", str, operation))
        else:
            raise InvalidArgument(
                f"{operation!r} is not a semantic memory operation; expected one of "
                f"{sorted(self.operations)}"
            )

    def _remember(self, data: Mapping[str, Any]) -> None:
        memory_id = _field(data, "id", str, MEMORY_REMEMBER)
        text = _field(data, "text", str, MEMORY_REMEMBER)
        metadata = data.get("metadata") or {}
        if memory_id in self._row_of or not isinstance(metadata, Mapping):
            raise InvalidArgument(
                f"memory_remember {memory_id!r}: the id is taken or metadata is not a map"
            )
        vector = self._vector_of(data, text)
        row = len(self._ids)
        self._append_row(memory_id, text, _plain(metadata), float(data.get("created") or 0.0))
        self._vectors.append(vector[None, :])
        self._index_row(row)
        self._next += 1

    def _vector_of(self, data: Mapping[str, Any], text: str) -> np.ndarray:
        raw, dim = data.get("vector"), self.embedder.dim
        if isinstance(raw, bytes) and data.get("embedder") == self.embedder.name:
            if len(raw) != 4 * dim:
                raise InvalidArgument(
                    f"memory_remember carries a vector of {len(raw)} bytes, expected {4 * dim}"
                )
            journaled = np.frombuffer(raw, dtype="<f4").reshape(1, dim)
            vectors = check_vectors(journaled, 1, dim, "the journaled vector")
        else:  # no vector, or one from another embedder (the agent changed models): remake it
            vectors = self.embedder.embed([text])
        vector: np.ndarray = vectors[0]
        return vector

    def _append_row(self, memory_id: str, text: str, metadata: dict[str, Any],
                    created: float) -> None:
        row = len(self._ids)
        self._ids.append(memory_id)
        self._texts.append(text)
        self._metadata.append(metadata)
        self._created.append(created)
        self._row_of[memory_id] = row
        if row >= len(self._alive):
            self._alive = np.resize(self._alive, max(1024, 2 * len(self._alive)))
            self._alive[row:] = False
        self._alive[row] = True

    def _index_row(self, row: int) -> None:
        if self._keywords is not None:
            self._keywords.add(row, terms(self._texts[row]))
        if self._by_value is not None:
            for item in _index_items(self._metadata[row]):
                self._by_value.setdefault(item, set()).add(row)

    def _forget(self, memory_id: str) -> None:
        row = self._row_of.pop(memory_id, None)
        if row is None:
            return  # already gone: forgetting is idempotent
        self._alive[row] = False
        self._vectors.zero(row)
        if self._keywords is not None:
            self._keywords.remove(row, terms(self._texts[row]))
        if self._by_value is not None:
            for item in _index_items(self._metadata[row]):
                self._by_value[item].discard(row)
        self._texts[row], self._metadata[row] = "", {}  # free them now
        dead = len(self._ids) - len(self._row_of)
        if dead >= self.compact_min_dead and dead > len(self._row_of):
            self._compact()

    def _compact(self) -> None:
        """Drop forgotten rows, keeping the order of the live ones."""
        live = np.flatnonzero(self._alive[: len(self._ids)])
        self._vectors.keep(live)
        self._ids = [self._ids[r] for r in live]
        self._texts = [self._texts[r] for r in live]
        self._metadata = [self._metadata[r] for r in live]
        self._created = [self._created[r] for r in live]
        self._row_of = {memory_id: row for row, memory_id in enumerate(self._ids)}
        self._alive = np.ones(max(1024, len(live)), dtype=bool)
        self._alive[len(live):] = False
        self._keywords = self._by_value = None  # rebuilt on their next use

    # -- lazily built indexes ----------------------------------------------

    def _keyword_index(self) -> KeywordIndex:
        if self._keywords is None:
            self._keywords = KeywordIndex()
            for row in np.flatnonzero(self._alive):
                self._keywords.add(int(row), terms(self._texts[row]))
        return self._keywords

    def _value_index(self) -> dict[tuple[str, Any], set[int]]:
        if self._by_value is None:
            self._by_value = {}
            for row in np.flatnonzero(self._alive):
                for item in _index_items(self._metadata[row]):
                    self._by_value.setdefault(item, set()).add(int(row))
        return self._by_value

    # -- checkpoints -------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Live memories in order, vectors as little-endian float32 bytes."""
        live = np.flatnonzero(self._alive[: len(self._ids)])
        vectors = self._vectors.rows(live).astype("<f4", copy=False)
        codes = self._vectors.codes(live).astype("<u8", copy=False)
        return {
            "format": SNAPSHOT_FORMAT,
            "embedder": self.embedder.name,
            "next": self._next,
            "ids": [self._ids[r] for r in live],
            "texts": [self._texts[r] for r in live],
            "metadata": [self._metadata[r] for r in live],
            "created": [self._created[r] for r in live],
            "vectors": {"dtype": "<f4", "shape": list(vectors.shape), "data": vectors.tobytes()},
            # derived from the vectors, but ~1 s per 100k to remake: kept for a fast restore
            "codes": {"scheme": code_scheme(self.embedder.dim), "dtype": "<u8",
                      "shape": list(codes.shape), "data": codes.tobytes()},
        }

    def load(self, snapshot: Mapping[str, Any]) -> None:
        """Replace the store with ``snapshot`` (as :meth:`snapshot` made it)."""
        if not isinstance(snapshot, Mapping) or snapshot.get("format") != SNAPSHOT_FORMAT:
            raise InvalidArgument(
                f"a semantic memory snapshot must be a map with format {SNAPSHOT_FORMAT}, "
                f"got {type(snapshot).__name__} (format "
                f"{snapshot.get('format') if isinstance(snapshot, Mapping) else None!r})"
            )
        ids, texts = list(snapshot["ids"]), list(snapshot["texts"])
        vectors = self._snapshot_vectors(snapshot, texts)
        same_model = snapshot.get("embedder") == self.embedder.name
        codes = _snapshot_codes(snapshot, len(texts), self.embedder.dim) if same_model else None
        self._clear()
        for memory_id, text, metadata, created in zip(
            ids, texts, snapshot["metadata"], snapshot["created"], strict=True
        ):
            self._append_row(memory_id, text, _plain(metadata), float(created))
        self._vectors.append(vectors, codes)
        self._next = int(snapshot["next"])

    def _snapshot_vectors(self, snapshot: Mapping[str, Any], texts: list[str]) -> np.ndarray:
        if snapshot.get("embedder") != self.embedder.name:
            # vectors of another model cannot be compared with ours: remake them
            empty = np.zeros((0, self.embedder.dim), dtype=np.float32)
            return self.embedder.embed(texts) if texts else empty
        stored, dim = snapshot["vectors"], self.embedder.dim
        flat = np.frombuffer(stored["data"], dtype=stored.get("dtype", "<f4"))
        if len(flat) != len(texts) * dim:
            raise InvalidArgument(
                f"the snapshot holds {len(flat)} vector values for {len(texts)} memories "
                f"of {dim} dimensions"
            )
        return check_vectors(flat.reshape(len(texts), dim), len(texts), dim, "the snapshot")


class SemanticMemory:
    """What agent code calls (through ``ctx.memory``): journaled writes, local reads."""

    def __init__(self, store: SemanticStore, journal: DurableWrite,
                 clock: Callable[[], float] = time.time, *,
                 ajournal: AsyncDurableWrite | None = None) -> None:
        self._store = store
        self._journal = journal
        self._ajournal = ajournal
        self._clock = clock
        # Held across an awaited write: the next id is only taken once the last
        # remember is applied, so concurrent requests never share an id.
        self._async_lock = asyncio.Lock()

    @property
    def store(self) -> SemanticStore:
        """The store behind this facade."""
        return self._store

    def remember(self, text: str, **metadata: Any) -> str:
        """Durably remember ``text`` with ``metadata``; return its id.

        Metadata values must be JSON-like; they come back on every hit and
        :meth:`recall`'s ``where=`` filters on them.
        """
        data = self._remember_data(text, metadata)
        embedder = self._store.embedder
        if not embedder.deterministic:  # replay must not call the model again
            data["vector"] = embedder.embed([text])[0].astype("<f4").tobytes()
            data["embedder"] = embedder.name
        with self._store.lock:
            data["id"] = self._store.next_id()
            if self._journal(MEMORY_REMEMBER, data) is not APPLIED:
                self._store.apply(MEMORY_REMEMBER, data)
        return str(data["id"])

    def _remember_data(self, text: str, metadata: dict[str, Any]) -> dict[str, Any]:
        _check_text(text, "text to remember", MAX_TEXT_CHARS)
        ensure_packable(metadata, "memory metadata")
        return {"text": text, "metadata": metadata, "created": self._clock()}

    async def aremember(self, text: str, **metadata: Any) -> str:
        """:meth:`remember`, awaitable (a model embedder runs in a worker thread)."""
        data = self._remember_data(text, metadata)
        embedder = self._store.embedder
        if not embedder.deterministic:
            vector = await asyncio.to_thread(embedder.embed, [text])
            data["vector"] = vector[0].astype("<f4").tobytes()
            data["embedder"] = embedder.name
        async with self._async_lock:
            data["id"] = self._store.next_id()
            await self._awrite(MEMORY_REMEMBER, data)
        return str(data["id"])

    async def aforget(self, memory_id: str) -> bool:
        """:meth:`forget`, awaitable."""
        async with self._async_lock:
            if not isinstance(memory_id, str) or memory_id not in self._store:
                return False
            await self._awrite(MEMORY_FORGET, {"id": memory_id})
        return True

    async def _awrite(self, operation: str, data: dict[str, Any]) -> None:
        if self._ajournal is None:
            applied = self._journal(operation, data)
        else:
            applied = await self._ajournal(operation, data)
        if applied is not APPLIED:
            self._store.apply(operation, data)

    def recall(self, query: str, k: int = 5, where: dict[str, Any] | None = None) -> list[Hit]:
        """The ``k`` memories closest in meaning to ``query``, best first.

        ``where`` keeps only memories whose metadata equals each of its items
        (``where={"topic": "people"}``). Scores are cosine similarities.
        """
        _check_text(query, "recall query", MAX_TEXT_CHARS)
        k, where = _check_k(k), _check_where(where)
        vector = self._store.embedder.embed([query])[0]
        with self._store.lock:
            return self._store.recall(vector, k, where)

    def search(self, keywords: str, k: int = 5, where: dict[str, Any] | None = None) -> list[Hit]:
        """The ``k`` memories that best match ``keywords`` by BM25 (exact words, no vectors)."""
        _check_text(keywords, "search keywords", MAX_TEXT_CHARS)
        k, where = _check_k(k), _check_where(where)
        with self._store.lock:
            return self._store.search(keywords, k, where)

    def forget(self, memory_id: str) -> bool:
        """Durably forget a memory; False (and nothing journaled) if there is none."""
        with self._store.lock:
            if not isinstance(memory_id, str) or memory_id not in self._store:
                return False
            data = {"id": memory_id}
            if self._journal(MEMORY_FORGET, data) is not APPLIED:
                self._store.apply(MEMORY_FORGET, data)
        return True

    def get(self, memory_id: str) -> Hit | None:
        """The memory with this id, or None."""
        if not isinstance(memory_id, str):
            return None
        with self._store.lock:
            return self._store.get(memory_id)

    def __len__(self) -> int:
        return len(self._store)


# -- validation and metadata keys --------------------------------------------

_MISSING: Final = object()


def _check_text(text: object, what: str, limit: int) -> None:
    if not isinstance(text, str) or not text.strip():
        raise InvalidArgument(f"the {what} must be a non-empty str, got {text!r:.80}")
    if len(text) > limit:
        raise InvalidArgument(
            f"the {what} has {len(text)} characters, over the limit of {limit}; "
            "split long documents into chunks and remember each"
        )


def _check_k(k: object) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
        raise InvalidArgument(f"k must be an int in [1, {MAX_K}], got {k!r}")
    return k


def _check_where(where: object) -> dict[str, Any] | None:
    if where is None:
        return None
    if not isinstance(where, Mapping) or not all(isinstance(key, str) for key in where):
        raise InvalidArgument(
            f"where must be a dict of metadata name -> value, got {where!r:.80}"
        )
    return dict(where)


def _field(data: Mapping[str, Any], name: str, kind: type, operation: str) -> Any:
    value = data.get(name)
    if not isinstance(value, kind):
        raise InvalidArgument(f"{operation} needs {name!r} as {kind.__name__}, got {value!r:.80}")
    return value


def _plain(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """A private copy, exactly as a replay would see it (tuples become lists)."""
    plain: dict[str, Any] = msgpack.unpackb(msgpack.packb(dict(metadata), use_bin_type=True),
                                            raw=False)
    return plain


def _snapshot_codes(snapshot: Mapping[str, Any], count: int, dim: int) -> np.ndarray | None:
    """The snapshot's SimHash codes if they were made as this version makes them."""
    stored = snapshot.get("codes")
    if not isinstance(stored, Mapping) or stored.get("scheme") != code_scheme(dim):
        return None  # remade from the vectors
    codes = np.frombuffer(stored["data"], dtype=stored.get("dtype", "<u8"))
    if len(codes) != count * CODE_WORDS:
        raise InvalidArgument(
            f"the snapshot holds {len(codes)} code words for {count} memories, "
            f"expected {count * CODE_WORDS}"
        )
    return codes.reshape(count, CODE_WORDS).astype(np.uint64)


def _indexable(value: object) -> bool:
    return value is None or isinstance(value, (str, int, float, bool, bytes))


def _value_key(value: Any) -> Any:
    # True == 1 == 1.0 in Python; metadata equality should not mix bools and numbers
    return ("bool", value) if isinstance(value, bool) else ("value", value)


def _index_items(metadata: Mapping[str, Any]) -> list[tuple[str, Any]]:
    return [(key, _value_key(value)) for key, value in metadata.items() if _indexable(value)]


def _equal(stored: Any, wanted: Any) -> bool:
    """Metadata equality: tuples match lists (what MessagePack gives back), bools
    match only bools."""
    if isinstance(stored, list) and isinstance(wanted, (list, tuple)):
        return len(stored) == len(wanted) and all(map(_equal, stored, wanted))
    if isinstance(stored, dict) and isinstance(wanted, Mapping):
        return stored.keys() == wanted.keys() and all(_equal(stored[k], wanted[k]) for k in stored)
    if isinstance(stored, (list, dict)) or isinstance(wanted, (list, tuple, Mapping)):
        return False
    return bool(_value_key(stored) == _value_key(wanted))
