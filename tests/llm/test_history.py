"""LLMHistory: journaled exchanges, compaction, checkpoints and replay agree."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest

from project_o.agent.store import StateBook, Store
from project_o.errors import InvalidArgument
from project_o.llm.history import (
    LLM_EXCHANGE,
    LLM_FORGET,
    LLM_USAGE,
    LLMHistory,
)


def exchange(conversation: str | None, n_messages: int, tag: str,
             usage: tuple[int, int] = (3, 2)) -> dict[str, Any]:
    messages = [{"role": "user" if i % 2 == 0 else "assistant", "content": f"{tag}-{i}"}
                for i in range(n_messages)]
    prompt, completion = usage
    return {"conversation": conversation, "messages": messages, "model": "m",
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                      "total_tokens": prompt + completion},
            "finish_reason": "stop", "request_id": tag, "at": 1.0}


def test_it_is_a_store_in_the_llm_history_section() -> None:
    history = LLMHistory()
    assert isinstance(history, Store)
    assert history.section == "llm_history"
    assert StateBook([history]).payload()["llm_history"]["chat"]["conversations"] == {}


def test_exchanges_append_and_usage_adds_up() -> None:
    history = LLMHistory()
    history.apply(LLM_EXCHANGE, exchange("c", 2, "a", usage=(10, 4)))
    history.apply(LLM_EXCHANGE, exchange("c", 2, "b", usage=(20, 6)))
    history.apply(LLM_EXCHANGE, exchange(None, 2, "one-off", usage=(1, 1)))
    history.apply(LLM_USAGE, {"model": "m", "usage": {"prompt_tokens": 5, "total_tokens": 5}})
    assert [m["content"] for m in history.messages("c")] == ["a-0", "a-1", "b-0", "b-1"]
    assert history.conversations() == ["c"]  # a one-off chat keeps no messages
    assert history.usage == {"calls": 3, "failures": 1, "prompt_tokens": 36,
                             "completion_tokens": 11, "total_tokens": 47}


def test_compaction_drops_whole_oldest_exchanges_and_keeps_the_newest() -> None:
    history = LLMHistory(max_messages=5)
    for tag in "abc":
        history.apply(LLM_EXCHANGE, exchange("c", 2, tag))
    assert [e["request_id"] for e in history.exchanges("c")] == ["b", "c"]
    history.apply(LLM_EXCHANGE, exchange("c", 7, "big"))  # alone over the cap: still kept
    assert [e["request_id"] for e in history.exchanges("c")] == ["big"]
    assert len(history.messages("c")) == 7
    assert history.usage["calls"] == 4  # totals are never compacted


def test_the_least_recently_updated_conversation_goes_first() -> None:
    history = LLMHistory(max_conversations=2)
    history.apply(LLM_EXCHANGE, exchange("x", 1, "x1"))
    history.apply(LLM_EXCHANGE, exchange("y", 1, "y1"))
    history.apply(LLM_EXCHANGE, exchange("x", 1, "x2"))  # x is now the most recent
    history.apply(LLM_EXCHANGE, exchange("z", 1, "z1"))
    assert history.conversations() == ["x", "z"]


def test_forget_drops_one_conversation() -> None:
    history = LLMHistory()
    history.apply(LLM_EXCHANGE, exchange("x", 2, "x"))
    history.apply(LLM_EXCHANGE, exchange("y", 2, "y"))
    history.apply(LLM_FORGET, {"conversation": "x"})
    assert history.conversations() == ["y"] and history.messages("x") == []


def test_checkpoint_then_replay_equals_replay_from_scratch() -> None:
    entries = [(LLM_EXCHANGE, exchange(f"c{i % 3}", 1 + i % 4, f"e{i}")) for i in range(40)]
    entries.insert(17, (LLM_FORGET, {"conversation": "c1"}))
    from_scratch = StateBook([LLMHistory(max_messages=6)])
    for operation, data in entries:
        from_scratch.apply(operation, data)
    first = StateBook([LLMHistory(max_messages=6)])
    for operation, data in entries[:25]:
        first.apply(operation, data)
    # The checkpoint payload travels as msgpack bytes.
    packed = msgpack.packb(first.payload(), use_bin_type=True)
    restored = StateBook([LLMHistory(max_messages=6)])
    restored.load(msgpack.unpackb(packed, raw=False))
    for operation, data in entries[25:]:
        restored.apply(operation, data)
    assert restored.payload() == from_scratch.payload()


@pytest.mark.parametrize(("operation", "data"), [
    ("llm_exchange", {"conversation": "c", "messages": "hello"}),
    ("llm_exchange", {"conversation": "", "messages": []}),
    ("llm_forget", {"conversation": 3}),
    ("memory_set", {"key": "k"}),
    ("llm_exchange", ["not", "a", "map"]),
])
def test_bad_operations_are_refused_and_change_nothing(operation: str, data: Any) -> None:
    history = LLMHistory()
    history.apply(LLM_EXCHANGE, exchange("c", 2, "kept"))
    before = history.snapshot()
    with pytest.raises(InvalidArgument):
        history.apply(operation, data)
    assert history.snapshot() == before


def test_limits_must_be_positive() -> None:
    with pytest.raises(InvalidArgument, match="max_messages"):
        LLMHistory(max_messages=0)
