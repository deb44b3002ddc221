"""A pool of mains (``--instances 2``) against a real supervisor, real processes.

What each read gets (docs/design.md, "A pool of mains"): a request sees
every write acknowledged before it was sent, whichever main wrote it and
whichever main serves the read; all mains apply the writes in WAL order,
so they converge on what a restart restores from checkpoint + WAL. A
kill -9 of one main with requests in flight loses none of them, and the
pool is refilled: the standby moves into the dead main's slot and a new
standby is forked.
"""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.supervisor.harness import FAST_HEARTBEAT, TOKEN, Stack

pytestmark = pytest.mark.slow

POOL_AGENT = Path(__file__).resolve().parents[1] / "fixtures" / "pool_agent.py"
#: deadlock guard while waiting for a state, not a speed limit
GUARD_S = 60.0


def _start(vault: Path, instances: int = 2) -> Stack:
    return Stack(vault, ["--agent", str(POOL_AGENT), "--instances", str(instances),
                         *FAST_HEARTBEAT])


@pytest.fixture
def pool(tmp_path: Path) -> Any:
    stack = _start(tmp_path / "vault")
    try:
        _wait_for(stack, lambda s: len(_main_pids(s)) == 2 and _standby(s) is not None)
        yield stack
    finally:
        stack.stop()


def _answer(stack: Stack, **request: Any) -> dict[str, Any]:
    response = stack.do(**request)
    assert response.status_code == 200, response.text
    output: dict[str, Any] = response.json()["output"]
    return output


def _main_pids(status: dict[str, Any]) -> dict[str, int]:
    """Main slot -> the pid serving in it (live mains only)."""
    return {i["slot"]: i["pid"] for i in status["instances"]
            if i["role"] == "main" and i["slot"] is not None}


def _standby(status: dict[str, Any]) -> int | None:
    return next((i["pid"] for i in status["instances"] if i["role"] == "standby"), None)


def _hold(stack: Stack, key: str, value: Any, seconds: float) -> httpx.Response:
    """One ``hold`` request on a client of its own (callers send several at once)."""
    assert stack.http is not None
    with httpx.Client(base_url=str(stack.http.base_url), timeout=120.0,
                      headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        return client.post("/v1/requests", json={"input": {
            "do": "hold", "key": key, "value": value, "seconds": seconds}})


def _wait_for(stack: Stack, ready: Any) -> dict[str, Any]:
    deadline = time.monotonic() + GUARD_S
    while time.monotonic() < deadline:
        status = stack.status()
        if ready(status):
            return status
        time.sleep(0.02)
    raise AssertionError(f"never reached the awaited state: {stack.status()['instances']}")


def _agent_slots(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    agent = next(c for c in status["tree"]["children"] if c["id"] == "agent")
    return {child["id"]: child for child in agent["children"]}


def test_status_lists_every_main_slot_and_the_standby(pool: Stack) -> None:
    status = pool.status()
    slots = _agent_slots(status)
    assert {"zygote", "main", "main-1", "standby"} <= set(slots)
    mains = _main_pids(status)
    assert set(mains) == {"main", "main-1"} and len(set(mains.values())) == 2
    assert slots["main"]["pid"] == mains["main"] and slots["main-1"]["pid"] == mains["main-1"]


def test_a_write_through_one_main_is_read_through_the_other_once_acknowledged(
        pool: Stack) -> None:
    """No sleeps: the read is sent after the write's answer, and sees it on either main."""
    crossed = 0
    for value in range(12):
        writer = _answer(pool, action="set", key="counter", value=value)["who"]
        read = _answer(pool, action="get", key="counter")
        assert read["value"] == value, f"read {read} after writing {value} through {writer}"
        crossed += read["who"] != writer
    assert crossed > 0  # reads were served by the main that did not write


def test_mains_converge_on_the_wal_order_and_a_restart_restores_it(tmp_path: Path) -> None:
    stack = _start(tmp_path / "vault")
    try:
        _wait_for(stack, lambda s: len(_main_pids(s)) == 2)
        bodies = [{"do": "set", "key": "x", "value": n} for n in range(40)]
        with ThreadPoolExecutor(8) as threads:  # both mains write the one key at once
            outputs = list(threads.map(lambda body: _answer(stack, **_body(body)), bodies))
        assert len({o["who"] for o in outputs}) == 2  # the writes came through both mains
        reads = [_answer(stack, action="get", key="x") for _ in range(6)]
        assert len({r["who"] for r in reads}) == 2
        agreed = {r["value"] for r in reads}
        assert len(agreed) == 1, f"the mains disagree: {reads}"
    finally:
        stack.stop()
    again = _start(tmp_path / "vault", instances=1)  # restored from checkpoint + WAL
    try:
        assert _answer(again, action="get", key="x")["value"] in agreed
    finally:
        again.stop()


def _body(body: dict[str, Any]) -> dict[str, Any]:
    return {"action": body["do"], **{k: v for k, v in body.items() if k != "do"}}


def test_kill_9_of_one_main_loses_no_request_and_the_pool_is_refilled(pool: Stack) -> None:
    before = pool.status()
    mains, standby = _main_pids(before), _standby(before)
    victim_slot, victim = "main-1", mains["main-1"]
    count = 12

    with ThreadPoolExecutor(count) as threads:
        # Held 1 s: a handler that runs longer than the heartbeat timeout (2 s here) without
        # progress is a hang by design, so 2 s left the innocent main no margin under load.
        futures = [threads.submit(_hold, pool, f"k{n}", n, 1.0) for n in range(count)]
        _wait_for(pool, lambda s: any(i["pid"] == victim and i["in_flight"] >= 2
                                      for i in s["instances"]))
        os.kill(victim, signal.SIGKILL)
        responses = [future.result() for future in futures]
    assert [r.status_code for r in responses] == [200] * count, [r.text for r in responses]
    after = _wait_for(pool, lambda s: len(_main_pids(s)) == 2 and _standby(s) is not None
                      and victim not in _main_pids(s).values())
    # The standby moved into the dead main's slot; a new standby was forked.
    assert _main_pids(after)[victim_slot] == standby and _main_pids(after)["main"] == mains["main"]
    assert _standby(after) not in (None, standby, victim)
    for n in range(count):  # every acknowledged write, read through either main
        assert _answer(pool, action="get", key=f"k{n}")["value"] == n


def test_a_poison_among_requests_spread_over_both_mains_is_found_and_the_rest_answered(
        pool: Stack) -> None:
    supervisor = pool.supervisor_pid()
    values: list[Any] = list(range(10))
    values.insert(4, "poison")

    with ThreadPoolExecutor(len(values)) as threads:
        responses = list(threads.map(lambda v: _hold(pool, f"p{v}", v, 0.3), values))
    poisoned = responses.pop(4)
    assert poisoned.status_code == 502, poisoned.text
    assert "quarantined" in poisoned.json()["error"]["message"]
    assert [r.status_code for r in responses] == [200] * 10, [r.text for r in responses]
    assert pool.supervisor_pid() == supervisor
    quarantined = [e for e in pool.status()["events"] if e["kind"] == "quarantine"]
    assert len(quarantined) == 1, quarantined  # the poison alone, none of the innocent
    _wait_for(pool, lambda s: len(_main_pids(s)) == 2 and _standby(s) is not None)
    for n in range(10):  # every innocent write, read through either main
        assert _answer(pool, action="get", key=f"p{n}")["value"] == n


def test_instances_out_of_range_is_a_clear_usage_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="--instances must be between 1 and 64"):
        Stack(tmp_path / "vault", ["--agent", str(POOL_AGENT), "--instances", "0"])
