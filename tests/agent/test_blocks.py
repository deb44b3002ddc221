"""Memory blocks: size limits, journaled writes, rendering, replay and checkpoints."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest

from project_o.agent.blocks import (
    BLOCK_APPEND,
    BLOCK_DEFINE,
    BLOCK_DELETE,
    BLOCK_SET,
    DEFAULT_BLOCK_LIMIT,
    Block,
    Blocks,
    BlockStore,
)
from project_o.errors import InvalidArgument


class Recorder:
    """A journal keeping what a WAL would."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, operation: str, data: dict[str, Any]) -> None:
        self.entries.append((operation, msgpack.unpackb(msgpack.packb(data), raw=False)))


@pytest.fixture
def journal() -> Recorder:
    return Recorder()


@pytest.fixture
def blocks(journal: Recorder) -> Blocks:
    return Blocks(BlockStore(), journal)


def test_set_get_append_and_their_journal_entries(blocks: Blocks, journal: Recorder) -> None:
    blocks.set("persona", "I am helpful.")
    blocks.append("human", "Likes tea.")
    blocks.append("human", "Lives in Oslo.")
    assert blocks.get("persona") == "I am helpful."
    assert blocks.get("human") == "Likes tea.\nLives in Oslo."
    assert blocks.get("missing") is None and blocks.get("missing", "") == ""
    assert journal.entries == [
        (BLOCK_SET, {"name": "persona", "text": "I am helpful."}),
        (BLOCK_APPEND, {"name": "human", "text": "Likes tea."}),
        (BLOCK_APPEND, {"name": "human", "text": "\nLives in Oslo."}),
    ]
    assert blocks.names() == ["persona", "human"] and len(blocks) == 2 and "human" in blocks


def test_a_block_written_before_it_is_defined_gets_the_default_limit(blocks: Blocks) -> None:
    blocks.set("notes", "x")
    assert blocks.block("notes") == Block("notes", "x", DEFAULT_BLOCK_LIMIT, "")
    assert DEFAULT_BLOCK_LIMIT == 2000
    blocks.set("notes", "y" * DEFAULT_BLOCK_LIMIT)  # exactly the limit fits
    with pytest.raises(InvalidArgument, match="at most 2000 characters"):
        blocks.append("notes", "z")


def test_an_over_limit_write_is_refused_before_it_is_journaled(
    blocks: Blocks, journal: Recorder
) -> None:
    blocks.define("human", limit=20, description="about the user")
    blocks.set("human", "Likes tea.")
    written = list(journal.entries)
    with pytest.raises(InvalidArgument) as raised:
        blocks.append("human", "Also likes coffee.")
    message = str(raised.value)
    assert "'human' holds at most 20 characters" in message
    assert "make it 29" in message and "blocks.define('human', limit=...)" in message
    with pytest.raises(InvalidArgument):
        blocks.set("human", "x" * 21)
    assert journal.entries == written
    assert blocks.get("human") == "Likes tea."


def test_define_changes_limit_and_description_and_repeats_are_free(
    blocks: Blocks, journal: Recorder
) -> None:
    blocks.define("persona", limit=100, description="who I am")
    blocks.define("persona", limit=100, description="who I am")  # same: nothing journaled
    assert journal.entries == [
        (BLOCK_DEFINE, {"name": "persona", "limit": 100, "description": "who I am"})]
    blocks.set("persona", "x" * 60)
    with pytest.raises(InvalidArgument, match="at most 50"):
        blocks.define("persona", limit=50)  # would cut the text it holds
    blocks.define("persona", limit=60, description="shorter")
    assert blocks.block("persona") == Block("persona", "x" * 60, 60, "shorter")


def test_replace_edits_the_first_match(blocks: Blocks) -> None:
    blocks.set("human", "Name: Ann. Pet: cat. Pet: dog.")
    blocks.replace("human", "Pet:", "Animal:")
    assert blocks.get("human") == "Name: Ann. Animal: cat. Pet: dog."
    with pytest.raises(InvalidArgument, match="does not contain"):
        blocks.replace("human", "Fish", "Bird")
    with pytest.raises(InvalidArgument, match="does not contain"):
        blocks.replace("nothing-here", "a", "b")


def test_delete(blocks: Blocks, journal: Recorder) -> None:
    blocks.set("scratch", "temp")
    assert blocks.delete("scratch") is True
    assert journal.entries[-1] == (BLOCK_DELETE, {"name": "scratch"})
    assert blocks.get("scratch") is None
    written = len(journal.entries)
    assert blocks.delete("scratch") is False
    assert len(journal.entries) == written


def test_render_is_the_prompt_section_in_definition_order(blocks: Blocks) -> None:
    assert blocks.render() == ""  # no blocks, no section
    blocks.define("persona", limit=100, description="who I am")
    blocks.set("persona", "A careful assistant.")
    blocks.set("human", "Prefers short answers.")
    assert blocks.render() == (
        "<memory_blocks>\n"
        "<persona>\n<description>who I am</description>\n"
        "<metadata>chars_current=20 chars_limit=100</metadata>\n"
        "<value>\nA careful assistant.\n</value>\n</persona>\n"
        "<human>\n"
        "<metadata>chars_current=22 chars_limit=2000</metadata>\n"
        "<value>\nPrefers short answers.\n</value>\n</human>\n"
        "</memory_blocks>"
    )
    only_human = blocks.render(["human"])
    assert "<human>" in only_human and "<persona>" not in only_human


@pytest.mark.parametrize("name", ["", "has space", "1starts-with-digit", "a" * 65, "<tag>", 5])
def test_bad_names_are_refused(blocks: Blocks, journal: Recorder, name: Any) -> None:
    with pytest.raises(InvalidArgument, match="block name"):
        blocks.set(name, "text")
    assert journal.entries == []


@pytest.mark.parametrize("limit", [0, -5, 10**9, 2.5, True, "100"])
def test_bad_limits_are_refused(blocks: Blocks, limit: Any) -> None:
    with pytest.raises(InvalidArgument, match="block limit"):
        blocks.define("persona", limit=limit)


def test_text_must_be_a_string(blocks: Blocks) -> None:
    with pytest.raises(InvalidArgument, match="must be a str"):
        blocks.set("persona", 42)  # type: ignore[arg-type]


def test_replay_and_checkpoint_give_the_live_blocks(blocks: Blocks, journal: Recorder) -> None:
    blocks.define("persona", limit=300, description="who I am")
    blocks.set("persona", "Helpful.")
    blocks.append("human", "Likes tea.")
    blocks.set("scratch", "gone soon")
    blocks.replace("persona", "Helpful", "Very helpful")
    blocks.delete("scratch")
    replayed = BlockStore()
    for operation, data in journal.entries:
        replayed.apply(operation, data)
    restored = BlockStore()
    restored.load(msgpack.unpackb(msgpack.packb(blocks.store.snapshot()), raw=False))
    assert replayed.snapshot() == blocks.store.snapshot() == restored.snapshot()
    assert Blocks(restored, Recorder()).render() == blocks.render()
    assert blocks.store.snapshot()[0] == {"name": "persona", "text": "Very helpful.",
                                          "limit": 300, "description": "who I am"}


@pytest.mark.parametrize(
    ("operation", "data"),
    [
        ("memory_block_frob", {"name": "a"}),
        (BLOCK_SET, {"name": "a", "text": 5}),
        (BLOCK_SET, {"name": "bad name", "text": "x"}),
        (BLOCK_DEFINE, {"name": "a", "limit": "big"}),
        (BLOCK_SET, ["not", "a", "map"]),
    ],
)
def test_apply_refuses_malformed_entries(operation: str, data: Any) -> None:
    with pytest.raises(InvalidArgument):
        BlockStore().apply(operation, data)


@pytest.mark.parametrize("snapshot", [{"persona": "x"}, [1], [{"name": "a", "limit": 0}]])
def test_load_refuses_malformed_snapshots(snapshot: Any) -> None:
    with pytest.raises(InvalidArgument):
        BlockStore().load(snapshot)
