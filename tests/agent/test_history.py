"""ctx.history: the episodic log of conversations."""

from __future__ import annotations

import itertools
from typing import Any

import msgpack
import pytest

from project_o import Agent
from project_o.agent.history import (
    HISTORY_EXCHANGE,
    HISTORY_RECORD,
    Entry,
    History,
    HistoryStore,
)
from project_o.errors import InvalidArgument


class Recorder:
    """A journal keeping what a WAL would."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, operation: str, data: dict[str, Any]) -> None:
        self.entries.append((operation, msgpack.unpackb(msgpack.packb(data), raw=False)))


def _history(limit: int = 100) -> tuple[History, Recorder]:
    journal, ticks = Recorder(), itertools.count(1000)
    return History(HistoryStore(limit), journal, clock=lambda: float(next(ticks))), journal


def test_record_journals_and_returns_the_sequence_number() -> None:
    history, journal = _history()
    first = history.bound("r1")
    assert first.record("user", "hello", channel="web") == 1
    assert first.record("assistant", {"text": "hi", "cites": ["mem-1"]}) == 2
    assert journal.entries[0] == (HISTORY_RECORD, {
        "role": "user", "content": "hello", "request_id": "r1", "time": 1000.0,
        "metadata": {"channel": "web"}})
    assert history.recent(1) == [
        Entry(2, "assistant", {"text": "hi", "cites": ["mem-1"]}, "r1", 1001.0, {})]
    assert len(history) == 2


def test_recent_is_oldest_first_and_filters_by_role() -> None:
    history, _ = _history()
    for n in range(5):
        history.bound(f"r{n}").record("user" if n % 2 == 0 else "assistant", f"m{n}")
    assert [e.content for e in history.recent(3)] == ["m2", "m3", "m4"]
    assert [e.content for e in history.recent(2, role="user")] == ["m2", "m4"]
    assert [e.content for e in history.recent(100)] == ["m0", "m1", "m2", "m3", "m4"]
    assert history.recent(0) == []


def test_conversation_is_the_entries_of_one_request() -> None:
    history, _ = _history()
    one, two = history.bound("one"), history.bound("two")
    one.record("user", "a")
    two.record("user", "b")
    one.record("assistant", "c")
    assert [e.content for e in one.conversation()] == ["a", "c"]
    assert [e.content for e in one.conversation("two")] == ["b"]
    assert history.conversation("nobody") == []


def test_record_exchange_is_one_write_for_two_entries() -> None:
    history, journal = _history()
    history.record_exchange("r9", {"q": "2+2"}, {"a": 4})
    assert [op for op, _ in journal.entries] == [HISTORY_EXCHANGE]
    assert [(e.role, e.content, e.request_id) for e in history.recent(5)] == [
        ("user", {"q": "2+2"}, "r9"), ("assistant", {"a": 4}, "r9")]


def test_the_oldest_entries_drop_off_past_the_limit() -> None:
    history, journal = _history(limit=3)
    for n in range(5):
        history.record("user", n)
    assert [(e.seq, e.content) for e in history.recent(10)] == [(3, 2), (4, 3), (5, 4)]
    replayed = HistoryStore(limit=3)
    for operation, data in journal.entries:
        replayed.apply(operation, data)
    assert replayed.snapshot() == history._store.snapshot()


def test_contents_are_copied_as_a_replay_would_see_them() -> None:
    history, _ = _history()
    content = {"items": (1, 2)}
    history.record("tool", content)
    content["items"] = "changed"
    assert history.recent(1)[0].content == {"items": [1, 2]}


def test_replay_and_checkpoint_give_the_live_log() -> None:
    history, journal = _history()
    history.bound("a").record("user", "hello", lang="en")
    history.record_exchange("b", "ping", "pong")
    history.bound("c").record("system", None)
    store = history._store
    replayed = HistoryStore()
    for operation, data in journal.entries:
        replayed.apply(operation, data)
    restored = HistoryStore()
    restored.load(msgpack.unpackb(msgpack.packb(store.snapshot()), raw=False))
    assert replayed.snapshot() == store.snapshot() == restored.snapshot()
    assert restored.recent(10) == store.recent(10)
    assert History(restored, Recorder()).record("user", "next") == 5


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda h: h.record("", "x"), "role"),
        (lambda h: h.record(None, "x"), "role"),
        (lambda h: h.record("r" * 65, "x"), "role"),
        (lambda h: h.record("user", {1, 2}), "set is not a MessagePack type"),
        (lambda h: h.record("user", "x", when=object()), "not a MessagePack type"),
        (lambda h: h.recent(-1), "non-negative"),
        (lambda h: h.record_exchange("r", "ok", {3}), "set is not a MessagePack type"),
    ],
)
def test_bad_arguments_are_refused_before_anything_is_journaled(call: Any, message: str) -> None:
    history, journal = _history()
    with pytest.raises(InvalidArgument, match=message):
        call(history)
    assert journal.entries == []


@pytest.mark.parametrize(
    ("operation", "data"),
    [("history_frob", {}), (HISTORY_RECORD, {"role": "", "content": "x"}),
     (HISTORY_RECORD, {"role": "user", "time": "noon"}),
     (HISTORY_RECORD, {"role": "user", "metadata": [1]})],
)
def test_apply_refuses_malformed_entries(operation: str, data: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgument):
        HistoryStore().apply(operation, data)


def test_a_limit_must_be_positive() -> None:
    with pytest.raises(InvalidArgument, match="positive"):
        HistoryStore(0)


def test_handlers_get_a_history_bound_to_their_request() -> None:
    agent = Agent("history-wiring")

    @agent.handler
    def handle(ctx: Any, request: str) -> Any:
        ctx.history.record("user", request)
        return [e.to_dict() for e in ctx.history.conversation()]

    client = agent.test_client()
    client.call("first", request_id="req-1")
    answer = client.call("second", request_id="req-2")
    assert [(e["content"], e["request_id"]) for e in answer] == [("second", "req-2")]
    assert [e.content for e in client.kit.history.recent(5)] == ["first", "second"]
    assert client.kit.state.payload()["agent_state"]["history"]["next"] == 3
