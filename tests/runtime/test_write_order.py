"""Writes of ours and the other mains' tail entries, applied in one order: the WAL's."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from project_o.errors import ProtocolError
from project_o.runtime.write_order import WriteOrder


class _Memory:
    """Records what is applied, in order; what each write sent."""

    def __init__(self) -> None:
        self.applied: list[tuple[str, Any]] = []
        self.sent: list[int] = []
        self.released: list[int] = []

    def order(self) -> WriteOrder:
        return WriteOrder(lambda entry_id, _op, _data: self.sent.append(entry_id),
                          lambda op, data: self.applied.append((op, data["v"])),
                          self.released.append)


def test_a_tail_waits_behind_our_acked_write_held_by_a_thread() -> None:
    memory = _Memory()
    order = memory.order()
    ours = order.submit("set", {"v": "ours-41"}, None)  # a worker thread's write
    order.acked(ours.id, 41)
    assert ours.released.is_set()  # the thread holds the baton now, applying it
    order.tailed(42, "set", {"v": "tail-42"})
    assert order.tails_waiting == 1 and memory.applied == []
    memory.applied.append(("set", "ours-41"))  # what the thread applies
    order.returned(ours)
    assert memory.applied == [("set", "ours-41"), ("set", "tail-42")]
    assert order.last_sequence == 42 and order.tails_waiting == 0
    assert memory.released == [41]  # a tail is not a write of ours


def test_a_tail_goes_before_our_unacked_writes() -> None:
    async def run() -> list[tuple[str, Any]]:
        memory = _Memory()
        order = memory.order()
        done = asyncio.get_running_loop().create_future()
        ours = order.submit("set", {"v": "ours-44"}, done)
        order.tailed(43, "set", {"v": "tail-43"})  # before our ack: before us in the WAL
        assert order.last_sequence == 43 and not done.done()
        order.acked(ours.id, 44)
        await done
        return memory.applied

    assert asyncio.run(run()) == [("set", "tail-43"), ("set", "ours-44")]


def test_a_tail_already_restored_is_skipped_and_one_out_of_order_is_refused() -> None:
    memory = _Memory()
    order = memory.order()
    order.last_sequence = 10
    order.tailed(9, "set", {"v": "old"})
    assert memory.applied == []
    held = order.submit("set", {"v": "ours-12"}, None)
    order.acked(held.id, 12)  # the thread has the baton
    order.tailed(11, "set", {"v": "late"})  # after our ack 12 on the socket: order broke
    with pytest.raises(ProtocolError, match="order broke"):
        order.returned(held)


def test_a_tail_that_cannot_be_applied_is_a_protocol_error() -> None:
    def refuse(_op: str, _data: dict[str, Any]) -> None:
        raise ValueError("no such store")

    order = WriteOrder(lambda *_: None, refuse, lambda _s: None)
    with pytest.raises(ProtocolError, match="tail entry 3 cannot be applied"):
        order.tailed(3, "set", {})
