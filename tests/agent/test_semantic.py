"""Semantic memory: remember, recall, search, forget; journaled, replayable, checkpointable."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from project_o import Agent
from project_o.agent.embedding import HashingEmbedder
from project_o.agent.semantic import (
    MAX_K,
    MAX_TEXT_CHARS,
    MEMORY_FORGET,
    MEMORY_REMEMBER,
    Hit,
    SemanticMemory,
    SemanticStore,
)
from project_o.errors import InvalidArgument

Journal = list[tuple[str, dict[str, Any]]]


class Recorder:
    """A journal that keeps what a WAL would (data round-tripped through MessagePack)."""

    def __init__(self) -> None:
        self.entries: Journal = []
        self.fail = False

    def __call__(self, operation: str, data: dict[str, Any]) -> None:
        if self.fail:
            raise OSError("the disk is gone")
        packed = msgpack.packb(data, use_bin_type=True)
        self.entries.append((operation, msgpack.unpackb(packed, raw=False)))


def _memory(store: SemanticStore | None = None) -> tuple[SemanticMemory, Recorder]:
    journal = Recorder()
    memory = SemanticMemory(SemanticStore() if store is None else store, journal, clock=_clock)
    return memory, journal


def _clock() -> float:
    return 1_700_000_000.0


def _replayed(entries: Journal, **options: Any) -> SemanticStore:
    store = SemanticStore(**options)
    for operation, data in entries:
        store.apply(operation, data)
    return store


def _through_checkpoint(store: SemanticStore, **options: Any) -> SemanticStore:
    """What a restore sees: the snapshot packed and unpacked as a checkpoint is."""
    packed = msgpack.packb(store.snapshot(), use_bin_type=True)
    restored = SemanticStore(**options)
    restored.load(msgpack.unpackb(packed, raw=False))
    return restored


def _answers(store: SemanticStore, queries: Sequence[str]) -> list[Any]:
    """Everything a handler can observe through recall and search."""
    memory = SemanticMemory(store, Recorder())
    return [
        [(h.id, h.text, round(h.score, 6), h.metadata) for h in memory.recall(q, k=8)]
        + [(h.id, round(h.score, 6)) for h in memory.search(q, k=8)]
        + [h.id for h in memory.recall(q, k=8, where={"shard": 1})]
        for q in queries
    ]


FACTS = [
    ("Alice's favourite colour is teal.", {"person": "alice", "shard": 0}),
    ("Bob is allergic to peanuts.", {"person": "bob", "shard": 1}),
    ("The staging server is at staging.example.com.", {"topic": "infra", "shard": 1}),
    ("Carol lives in Lisbon with her two cats.", {"person": "carol", "shard": 0}),
    ("The backup job runs nightly at 2 am.", {"topic": "infra", "shard": 1}),
]
QUERIES = ["What colour does Alice like?", "peanut allergy", "staging server", "cats", "backup"]


def _filled() -> tuple[SemanticMemory, Recorder, list[str]]:
    memory, journal = _memory()
    ids = [memory.remember(text, **metadata) for text, metadata in FACTS]
    return memory, journal, ids


# ------------------------------------------------------------- remember/recall


def test_remember_journals_the_id_chosen_before_the_write() -> None:
    memory, journal, ids = _filled()
    assert ids == ["mem-1", "mem-2", "mem-3", "mem-4", "mem-5"]
    operation, data = journal.entries[1]
    assert operation == MEMORY_REMEMBER
    assert data["id"] == "mem-2" and data["text"] == FACTS[1][0]
    assert data["metadata"] == FACTS[1][1]
    assert "vector" not in data  # the default embedder is deterministic: replay re-embeds
    assert len(memory) == 5


def test_recall_returns_the_closest_memory_first_with_its_metadata() -> None:
    memory, _, ids = _filled()
    hits = memory.recall("What colour does Alice like best?", k=3)
    assert [type(h) for h in hits] == [Hit] * 3
    assert hits[0].id == ids[0] and hits[0].text == FACTS[0][0]
    assert hits[0].metadata == {"person": "alice", "shard": 0}
    assert 0 < hits[0].score <= 1 and hits[0].score > hits[1].score >= hits[2].score
    assert hits[0].to_dict()["id"] == ids[0]
    msgpack.packb(hits[0].to_dict())  # what a handler returns must be sendable


def test_recall_of_more_than_there_is_returns_everything() -> None:
    memory, _, _ = _filled()
    assert len(memory.recall("anything", k=50)) == 5
    assert _memory()[0].recall("anything") == []


def test_a_failed_journal_changes_nothing() -> None:
    memory, journal, _ = _filled()
    journal.fail = True
    with pytest.raises(OSError):
        memory.remember("This write never became durable")
    assert len(memory) == 5
    journal.fail = False
    assert memory.remember("The next one") == "mem-6"  # the failed write consumed no id
    assert all("never became" not in h.text for h in memory.recall("write durable", k=10))


def test_metadata_is_copied_so_callers_cannot_change_it_behind_the_journal() -> None:
    memory, _ = _memory()
    tags = ["a", "b"]
    memory_id = memory.remember("Tagged memory", tags=tags, pair=(1, 2))
    tags.append("c")
    hit = memory.get(memory_id)
    assert hit is not None and hit.metadata == {"tags": ["a", "b"], "pair": [1, 2]}
    hit.metadata["tags"].append("d")
    assert memory.get(memory_id).metadata["tags"] == ["a", "b"]  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ({"person": "alice"}, ["mem-1"]),
        ({"topic": "infra"}, ["mem-3", "mem-5"]),
        ({"topic": "infra", "shard": 1}, ["mem-3", "mem-5"]),
        ({"topic": "infra", "shard": 0}, []),
        ({"person": "nobody"}, []),
        ({"shard": True}, []),  # True == 1 in Python, but not in metadata
        ({}, ["mem-1", "mem-2", "mem-3", "mem-4", "mem-5"]),
    ],
)
def test_where_keeps_memories_whose_metadata_equals_every_item(
    where: dict[str, Any], expected: list[str]
) -> None:
    memory, _, _ = _filled()
    assert sorted(h.id for h in memory.recall("server", k=10, where=where)) == expected


def test_where_on_list_values_compares_whole_values() -> None:
    memory, _ = _memory()
    memory.remember("first", tags=["x", "y"])
    memory.remember("second", tags=["x"])
    assert [h.text for h in memory.recall("first", where={"tags": ["x", "y"]})] == ["first"]
    assert [h.text for h in memory.recall("first", where={"tags": ("x",)})] == ["second"]


def test_search_ranks_by_keywords_and_finds_nothing_without_them() -> None:
    memory, _, ids = _filled()
    hits = memory.search("staging server")
    assert hits[0].id == ids[2] and hits[0].score > 0
    filtered = memory.search("infra backup nightly", where={"shard": 1})
    assert filtered[0].id == ids[4]
    assert memory.search("zebra quantum") == []
    assert memory.search("the of and") == []  # stopwords only


def test_identical_texts_tie_and_the_older_comes_first() -> None:
    memory, _ = _memory()
    first = memory.remember("The same words")
    second = memory.remember("The same words")
    hits = memory.recall("same words", k=2)
    assert [h.id for h in hits] == [first, second]
    assert hits[0].score == hits[1].score


# ----------------------------------------------------------------- forget


def test_forget_is_journaled_and_the_memory_is_gone_everywhere() -> None:
    memory, journal, ids = _filled()
    memory.search("peanuts")  # build the keyword index first: forget must update it
    memory.recall("x", where={"person": "bob"})
    assert memory.forget(ids[1]) is True
    assert journal.entries[-1] == (MEMORY_FORGET, {"id": ids[1]})
    assert memory.get(ids[1]) is None
    assert ids[1] not in [h.id for h in memory.recall("peanuts allergy", k=10)]
    assert memory.search("peanuts") == []
    assert memory.recall("x", where={"person": "bob"}) == []
    assert len(memory) == 4


def test_forgetting_what_is_not_there_journals_nothing() -> None:
    memory, journal, ids = _filled()
    memory.forget(ids[0])
    written = len(journal.entries)
    assert memory.forget(ids[0]) is False
    assert memory.forget("mem-999") is False
    assert len(journal.entries) == written


def test_compaction_keeps_every_answer() -> None:
    compacting, journal = _memory(SemanticStore(compact_min_dead=4))
    keeping, _ = _memory(SemanticStore(compact_min_dead=10**9))
    queries = ["fact about item 1", "item 2", "fact 7"]
    for memory in (compacting, keeping):
        ids = [memory.remember(f"fact {n} about item {n % 3}", shard=n % 2) for n in range(10)]
        _answers(memory.store, queries)  # build the lazy indexes before the forgets
        for memory_id in ids[:6]:  # the 6th makes 6 forgotten > 4 live: compaction
            memory.forget(memory_id)
    assert len(compacting.store._vectors) == 4 and len(keeping.store._vectors) == 10
    assert _answers(compacting.store, queries) == _answers(keeping.store, queries)
    assert compacting.store.snapshot() == keeping.store.snapshot()
    assert compacting.remember("after compaction") == "mem-11"
    assert _replayed(journal.entries, compact_min_dead=4).snapshot() == compacting.store.snapshot()


# ------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda m: m.remember(""), "non-empty str"),
        (lambda m: m.remember("   "), "non-empty str"),
        (lambda m: m.remember(42), "non-empty str"),
        (lambda m: m.remember("x" * (MAX_TEXT_CHARS + 1)), "split long documents"),
        (lambda m: m.remember("ok", tags={1, 2}), "set is not a MessagePack type"),
        (lambda m: m.recall("q", k=0), "k must be an int"),
        (lambda m: m.recall("q", k=MAX_K + 1), "k must be an int"),
        (lambda m: m.recall("q", k=True), "k must be an int"),
        (lambda m: m.recall("q", where=["shard"]), "where must be a dict"),
        (lambda m: m.recall("q", where={1: "x"}), "where must be a dict"),
        (lambda m: m.search("", k=3), "non-empty str"),
    ],
)
def test_bad_arguments_are_refused_before_anything_is_journaled(call: Any, message: str) -> None:
    memory, journal = _memory()
    with pytest.raises(InvalidArgument, match=message):
        call(memory)
    assert journal.entries == []


@pytest.mark.parametrize(
    ("operation", "data"),
    [
        (MEMORY_REMEMBER, {"text": "no id"}),
        (MEMORY_REMEMBER, {"id": "mem-1", "text": 5}),
        (MEMORY_REMEMBER, {"id": "mem-1", "text": "x", "metadata": [1]}),
        (MEMORY_FORGET, {}),
        ("memory_frobnicate", {"id": "mem-1"}),
    ],
)
def test_apply_refuses_malformed_entries(operation: str, data: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgument):
        SemanticStore().apply(operation, data)


def test_apply_refuses_an_id_that_is_taken() -> None:
    store = SemanticStore()
    store.apply(MEMORY_REMEMBER, {"id": "mem-1", "text": "a"})
    with pytest.raises(InvalidArgument, match="taken"):
        store.apply(MEMORY_REMEMBER, {"id": "mem-1", "text": "b"})


# ------------------------------------------------- replay and checkpoints


def test_replay_and_checkpoint_give_the_live_state() -> None:
    memory, journal, ids = _filled()
    memory.forget(ids[2])
    memory.remember("Dave's birthday is on the 3rd of July.", person="dave", shard=1)
    live = memory.store
    replayed = _replayed(journal.entries)
    restored = _through_checkpoint(live)
    assert replayed.snapshot() == live.snapshot() == restored.snapshot()
    assert _answers(replayed, QUERIES) == _answers(live, QUERIES) == _answers(restored, QUERIES)
    assert SemanticMemory(restored, Recorder()).remember("next") == "mem-7"


def test_checkpoint_keeps_vectors_as_float32_bytes() -> None:
    memory, _, _ = _filled()
    snapshot = memory.store.snapshot()
    vectors = snapshot["vectors"]
    assert vectors["dtype"] == "<f4" and vectors["shape"] == [5, 384]
    assert isinstance(vectors["data"], bytes) and len(vectors["data"]) == 5 * 384 * 4
    stored = np.frombuffer(vectors["data"], dtype="<f4").reshape(5, 384)
    np.testing.assert_array_equal(stored, HashingEmbedder().embed([t for t, _ in FACTS]))


class CountingEmbedder:
    """The default embedder, counting calls; ``deterministic`` as given."""

    def __init__(self, deterministic: bool, dim: int = 384) -> None:
        self.inner = HashingEmbedder(dim)
        self.name = f"counting:{dim}"
        self.dim = dim
        self.deterministic = deterministic
        self.calls = 0

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        return self.inner.embed(texts)


def test_restore_does_not_re_embed() -> None:
    embedder = CountingEmbedder(deterministic=True)
    memory, _ = _memory(SemanticStore(embedder))
    for text, metadata in FACTS:
        memory.remember(text, **metadata)
    snapshot = memory.store.snapshot()
    counting = CountingEmbedder(deterministic=True)
    SemanticStore(counting).load(snapshot)
    assert counting.calls == 0


def test_an_embedder_that_is_not_deterministic_has_its_vectors_journaled() -> None:
    memory, journal = _memory(SemanticStore(CountingEmbedder(deterministic=False)))
    memory.remember("Bob is allergic to peanuts.")
    _, data = journal.entries[0]
    assert isinstance(data["vector"], bytes) and len(data["vector"]) == 384 * 4
    assert data["embedder"] == "counting:384"
    replay_embedder = CountingEmbedder(deterministic=False)
    replayed = _replayed(journal.entries, embedder=replay_embedder)
    assert replay_embedder.calls == 0  # replay never calls the model
    assert replayed.snapshot() == memory.store.snapshot()


def test_vectors_of_another_embedder_are_made_again() -> None:
    memory, journal, _ = _filled()
    other = CountingEmbedder(deterministic=False, dim=128)
    restored = SemanticStore(other)
    restored.load(memory.store.snapshot())  # the snapshot's vectors are 384-d hashing ones
    assert other.calls == 1 and restored.snapshot()["vectors"]["shape"] == [5, 128]
    hits = SemanticMemory(restored, Recorder()).recall("What colour does Alice like?")
    assert hits[0].id == "mem-1"
    replayed = _replayed(journal.entries, embedder=CountingEmbedder(False, dim=128))
    assert replayed.snapshot()["vectors"] == restored.snapshot()["vectors"]


@pytest.mark.parametrize(
    "damage",
    [
        lambda s: s.update(format=99),
        lambda s: s["vectors"].update(data=s["vectors"]["data"][:-4]),
        lambda s: s["codes"].update(data=s["codes"]["data"][:-8]),
        lambda s: s.update(ids=s["ids"][:-1]),
    ],
)
def test_a_damaged_snapshot_is_refused(damage: Any) -> None:
    memory, _, _ = _filled()
    snapshot = memory.store.snapshot()
    damage(snapshot)
    with pytest.raises((InvalidArgument, ValueError)):
        SemanticStore().load(snapshot)


# ----------------------------------------------------- property: replay = live

_TEXTS = st.sampled_from([f"{a} {b}" for a in ("red", "blue", "green", "cat", "server")
                          for b in ("apple", "dog", "report", "teal", "backup")])
_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("remember"), _TEXTS, st.integers(0, 2)),
        st.tuples(st.just("forget"), st.integers(1, 40), st.just(0)),
    ),
    max_size=40,
)


@settings(max_examples=30, deadline=None)
@given(_OPS)
def test_any_sequence_of_writes_replays_and_restores_to_the_live_state(
    ops: list[tuple[str, Any, int]],
) -> None:
    memory, journal = _memory(SemanticStore(compact_min_dead=3))
    for action, value, shard in ops:
        if action == "remember":
            memory.remember(value, shard=shard)
        else:
            memory.forget(f"mem-{value}")
    live = memory.store
    replayed = _replayed(journal.entries, compact_min_dead=3)
    restored = _through_checkpoint(live, compact_min_dead=3)
    queries = ["red apple", "backup server", "teal cat"]
    assert replayed.snapshot() == live.snapshot() == restored.snapshot()
    assert _answers(replayed, queries) == _answers(live, queries) == _answers(restored, queries)


# --------------------------------------------------------- through ctx.memory


def test_handlers_reach_semantic_memory_and_blocks_through_ctx_memory() -> None:
    agent = Agent("semantic-wiring")

    @agent.handler
    def handle(ctx: Any, request: dict[str, Any]) -> Any:
        if request["do"] == "remember":
            return ctx.memory.remember(request["text"], source="test")
        if request["do"] == "forget":
            return ctx.memory.forget(request["id"])
        ctx.memory.blocks.set("persona", "helpful")
        return [h.to_dict() for h in ctx.memory.recall(request["q"])] + [
            h.id for h in ctx.memory.search(request["q"])]

    client = agent.test_client()
    memory_id = client.call({"do": "remember", "text": "Bob is allergic to peanuts."})
    answer = client.call({"do": "recall", "q": "peanuts"})
    assert answer[0]["id"] == memory_id and answer[0]["metadata"] == {"source": "test"}
    assert answer[-1] == memory_id
    assert [op for op, _ in client.journal] == [MEMORY_REMEMBER, "memory_block_set"]
    payload = client.kit.state.payload()
    assert payload["agent_state"]["semantic"]["ids"] == [memory_id]
    assert payload["memory_blocks"]["blocks"][0]["text"] == "helpful"
    assert client.call({"do": "forget", "id": memory_id}) is True
    assert client.memory.semantic.get(memory_id) is None
