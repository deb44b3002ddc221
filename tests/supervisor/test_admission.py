"""Slots per instance, the exclusive slot of a suspect, the queue limit, suspects."""

from __future__ import annotations

import asyncio

import pytest

from project_o.errors import NoInstanceAvailable, Overloaded
from project_o.supervisor.admission import Admission, InstanceGate
from project_o.supervisor.poison import PoisonTracker
from tests.supervisor.experiment_fakes import async_test


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


@async_test
async def test_a_gate_hands_out_its_capacity_then_makes_callers_wait() -> None:
    gate = InstanceGate(2)
    await gate.acquire()
    await gate.acquire()
    third = asyncio.create_task(gate.acquire())
    await _settle()
    assert not third.done() and gate.waiting == 1
    gate.release()
    await _settle()
    assert third.done() and gate.used == 2


@async_test
async def test_an_exclusive_caller_waits_for_the_instance_to_empty_and_nobody_overtakes_it() -> None:
    gate = InstanceGate(3)
    await gate.acquire()
    apart = asyncio.create_task(gate.acquire(exclusive=True))
    later = asyncio.create_task(gate.acquire())  # a slot is free, but it must wait its turn
    await _settle()
    assert not apart.done() and not later.done()
    gate.release()
    await _settle()
    assert apart.done() and not later.done()  # alone on the instance now
    gate.release(exclusive=True)
    await _settle()
    assert later.done() and gate.used == 1


@async_test
async def test_try_acquire_takes_only_a_free_slot_nobody_is_queued_for() -> None:
    gate = InstanceGate(2)
    assert gate.try_acquire() and gate.used == 1
    assert not gate.try_acquire(exclusive=True)  # one is held: not all of them free
    apart = asyncio.create_task(gate.acquire(exclusive=True))
    await _settle()
    assert not gate.try_acquire()  # a slot is free, but the exclusive caller is first in line
    assert gate.used == 1 and gate.waiting == 1
    gate.release()
    await _settle()
    assert apart.done()
    gate.release(exclusive=True)
    assert gate.try_acquire(exclusive=True) and not gate.try_acquire()


@async_test
async def test_a_cancelled_waiter_leaves_the_line_without_holding_it_up() -> None:
    gate = InstanceGate(1)
    await gate.acquire()
    stuck = asyncio.create_task(gate.acquire(exclusive=True))
    behind = asyncio.create_task(gate.acquire())
    await _settle()
    stuck.cancel()
    await _settle()
    gate.release()
    await _settle()
    assert behind.done() and not behind.cancelled() and gate.used == 1


def test_past_the_queue_limit_a_request_is_turned_away_with_a_retry_after() -> None:
    admission = Admission(max_queued=2)
    with admission.waiting(), admission.waiting():
        with pytest.raises(Overloaded) as refused, admission.waiting():
            pass  # pragma: no cover - never entered
        assert isinstance(refused.value, NoInstanceAvailable)  # 503 with Retry-After
        assert refused.value.retry_after_s >= 1
        assert refused.value.http_status == 503
    assert admission.queued == 0
    with admission.waiting():
        assert admission.queued == 1


def test_a_suspect_is_run_apart_until_answered_and_a_lone_killer_is_quarantined() -> None:
    poison = PoisonTracker(threshold=2)
    poison.suspect("r1")
    assert poison.is_suspect("r1")
    poison.forgive("r1")
    assert not poison.is_suspect("r1")
    poison.suspect("bad")
    assert poison.blame("bad") is None  # alone on the instance once: not yet
    assert poison.blame("bad") == 2  # twice in a row: quarantined
    poison.settle("bad")
    assert not poison.is_suspect("bad")
