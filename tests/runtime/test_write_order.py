"""WriteOrder on its own: writes released strictly in send (WAL) order, whoever applies them."""

from __future__ import annotations

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
