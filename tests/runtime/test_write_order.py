"""WriteOrder on its own: writes released strictly in send (WAL) order, whoever applies them,
and the other mains' tail entries applied in the same order among ours."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from project_o.errors import ProtocolError
from project_o.runtime.write_order import WriteOrder


def _order(applied: list[Any], released: list[int]) -> WriteOrder:
    return WriteOrder(lambda entry_id, operation, data: None,
                      lambda operation, data: applied.append(data["n"]), released.append,
                      thread_applies=lambda operation: operation == "locked")


def test_unlocked_thread_writes_are_applied_by_the_loop_and_locked_ones_wait_for_the_baton(
) -> None:
    applied: list[Any] = []
    released: list[int] = []
    order = _order(applied, released)
    first = order.submit("kv", {"n": 1}, None)
    second = order.submit("locked", {"n": 2}, None)
    third = order.submit("kv", {"n": 3}, None)
    order.acked(third.id, 3)  # acked early: waits for the two before it
    assert not third.released.is_set() and applied == []
    order.acked(first.id, 1)
    assert first.released.is_set() and first.applied and applied == [1]
    order.acked(second.id, 2)
    # The locked store's write goes to its thread (the baton); nothing passes it meanwhile.
    assert second.released.is_set() and not second.applied and order.baton_out
    assert not third.released.is_set() and applied == [1]
    applied.append(2)  # the writing thread applies its own write, then hands back the baton
    order.returned(second)
    assert third.released.is_set() and third.applied and applied == [1, 2, 3]
    assert released == [1, 2, 3] and order.last_sequence == 3 and order.in_flight == 0


def test_an_error_applying_for_a_thread_is_handed_to_that_thread() -> None:
    def apply(operation: str, data: dict[str, Any]) -> None:
        raise ValueError("cannot apply")

    order = WriteOrder(lambda *args: None, apply, lambda sequence: None,
                       thread_applies=lambda operation: False)
    write = order.submit("kv", {}, None)
    order.acked(write.id, 1)
    assert write.released.is_set() and isinstance(write.error, ValueError)
    assert order.last_sequence == 1  # in the WAL all the same: the order goes on


def test_an_ack_whose_sequence_goes_back_breaks_the_protocol() -> None:
    order = _order([], [])
    first = order.submit("kv", {"n": 1}, None)
    second = order.submit("kv", {"n": 2}, None)
    order.acked(first.id, 5)
    with pytest.raises(ProtocolError, match="not above"):
        order.acked(second.id, 4)


# -- tail entries of the other mains ----------------------------------------------


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
