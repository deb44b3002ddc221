"""Message and MessageType: shape checks at construction, the type catalogue."""

from __future__ import annotations

import dataclasses
import math
import re
import time
from pathlib import Path

import pytest

from project_o.errors import InvalidArgument
from project_o.wire import Message, MessageType

DESIGN_DOC = Path(__file__).resolve().parents[2] / "docs" / "design.md"

# The types of the wire protocol (docs/design.md, "Wire protocol").
EXPECTED_TYPES = {
    "hello", "heartbeat", "request", "response", "wal_entry", "wal_ack", "checkpoint",
    "checkpoint_ack", "restore", "evolution_intent", "evolution_result", "load_code",
    "hot_reload", "metrics", "shutdown", "error", "fork", "forked", "exited", "kill", "promote",
    "feedback", "stream", "llm_call", "llm_token", "llm_result",
}  # fmt: skip


def test_message_type_is_exactly_the_protocol_catalogue() -> None:
    assert {member.value for member in MessageType} == EXPECTED_TYPES


def test_the_design_doc_tables_name_every_type_and_only_those() -> None:
    text = DESIGN_DOC.read_text(encoding="utf-8")
    section = text.split("\n## Wire protocol\n", 1)[1].split("\n### Instance exit codes", 1)[0]
    documented = set()
    for cell in re.findall(r"^\| (`[a-z_]+`(?: / `[a-z_]+`)*) \|", section, re.MULTILINE):
        documented.update(re.findall(r"`([a-z_]+)`", cell))
    assert documented == {member.value for member in MessageType}


def test_members_compare_equal_to_their_strings() -> None:
    # mypy thinks an enum never equals a str; a StrEnum does, and callers rely on it.
    assert MessageType.WAL_ENTRY == "wal_entry"  # type: ignore[comparison-overlap]
    assert str(MessageType.WAL_ENTRY) == "wal_entry"


def test_string_type_is_stored_as_the_enum_member() -> None:
    message = Message("request", {"id": "r1"})
    assert message.type is MessageType.REQUEST


def test_defaults_are_empty_metadata_and_now() -> None:
    before = time.time()
    message = Message(MessageType.HEARTBEAT, {"beat": 1})
    after = time.time()
    assert message.metadata == {}
    assert before <= message.timestamp <= after


def test_default_metadata_is_not_shared() -> None:
    first, second = Message("hello", {}), Message("hello", {})
    first.metadata["trace"] = "x"
    assert second.metadata == {}


def test_integer_timestamp_becomes_float() -> None:
    message = Message("hello", {}, timestamp=1_700_000_000)
    assert isinstance(message.timestamp, float)
    assert message.timestamp == 1_700_000_000.0


def test_message_is_frozen() -> None:
    message = Message("hello", {})
    with pytest.raises(dataclasses.FrozenInstanceError):
        message.type = "error"  # type: ignore[misc]


def test_unknown_type_is_refused_and_known_types_are_listed() -> None:
    with pytest.raises(InvalidArgument, match="'hullo'.*expected one of: hello") as info:
        Message("hullo", {})
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("bad_type", [None, 1, b"hello"])
def test_non_string_type_is_refused(bad_type: object) -> None:
    with pytest.raises(InvalidArgument, match="not part of the protocol"):
        Message(bad_type, {})  # type: ignore[arg-type]


@pytest.mark.parametrize("field", ["data", "metadata"])
@pytest.mark.parametrize("bad", [None, [], "text", 3])
def test_data_and_metadata_must_be_dicts(field: str, bad: object) -> None:
    kwargs = {"data": {}, "metadata": {}, field: bad}
    with pytest.raises(InvalidArgument, match=f"message {field} must be a dict"):
        Message("hello", **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [True, "1700000000", None, math.nan, math.inf, -math.inf])
def test_timestamp_must_be_a_finite_number(bad: object) -> None:
    with pytest.raises(InvalidArgument, match="timestamp"):
        Message("hello", {}, timestamp=bad)  # type: ignore[arg-type]
