"""Every guarantee with many requests in flight per instance, against a real supervisor.

Requests are counted as they are acknowledged to the client (200) and as
their writes are found afterwards: a kill -9 of the main with many
requests in flight loses none; a poison request among innocent ones is
found (re-run apart) and quarantined while the others are answered; an
``async def`` handler that blocks the event loop is a hang; past the
queue limit a client gets 503 with Retry-After; a shadow and a canary see
concurrent traffic and the client still loses nothing.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.supervisor.harness import FAST_HEARTBEAT, TOKEN, Stack

pytestmark = pytest.mark.slow

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
ASYNC_AGENT = FIXTURES / "async_agent.py"
NARROW_AGENT = FIXTURES / "narrow_agent.py"
#: deadlock guard while waiting for requests to be in flight, not a speed limit
GUARD_S = 60.0


def _client(stack: Stack) -> httpx.Client:
    assert stack.http is not None
    return httpx.Client(base_url=str(stack.http.base_url), timeout=120.0,
                        headers={"Authorization": f"Bearer {TOKEN}"})


def _concurrently(stack: Stack, bodies: list[dict[str, Any]],
                  while_in_flight: Callable[[], None] | None = None) -> list[httpx.Response]:
    """POST every body at once (one client each); ``while_in_flight`` runs meanwhile."""
    def post(body: dict[str, Any]) -> httpx.Response:
        with _client(stack) as client:
            return client.post("/v1/requests", json={"input": body})

    with ThreadPoolExecutor(len(bodies)) as pool:
        futures = [pool.submit(post, body) for body in bodies]
        if while_in_flight is not None:
            while_in_flight()
        return [future.result() for future in futures]


def _main(stack: Stack) -> dict[str, Any]:
    return next(i for i in stack.status()["instances"] if i["role"] == "main")


def _wait_in_flight(stack: Stack, count: int) -> dict[str, Any]:
    deadline = time.monotonic() + GUARD_S
    while time.monotonic() < deadline:
        main = _main(stack)
        if main["in_flight"] >= count:
            return main
        time.sleep(0.01)
    raise AssertionError(f"never {count} requests in flight at once")


def _value(stack: Stack, key: str) -> Any:
    response = stack.do("get", key=key)
    assert response.status_code == 200, response.text
    return response.json()["output"]["value"]


@pytest.fixture
def async_stack(tmp_path: Path) -> Any:
    running = Stack(tmp_path / "vault", ["--agent", str(ASYNC_AGENT), *FAST_HEARTBEAT])
    yield running
    running.stop()


def test_kill_9_with_many_requests_in_flight_loses_none(async_stack: Stack) -> None:
    stack, rng = async_stack, random.Random(12)
    in_flight = 12
    victims: list[int] = []
    for round_ in range(2):

        def kill_mid_flight() -> None:
            main = _wait_in_flight(stack, in_flight * 2 // 3)
            time.sleep(rng.uniform(0.0, 0.2))  # a random point in the handlers' sleep
            victims.append(main["pid"])
            os.kill(main["pid"], signal.SIGKILL)

        bodies = [{"do": "sleep_set", "seconds": 1.0, "key": f"r{round_}-{n}", "value": n}
                  for n in range(in_flight)]
        responses = _concurrently(stack, bodies, kill_mid_flight)
        acknowledged = [r for r in responses if r.status_code == 200]
        assert len(acknowledged) == in_flight, [r.text for r in responses]  # none lost
        for n in range(in_flight):  # every acknowledged write is there
            assert _value(stack, f"r{round_}-{n}") == n
        assert _main(stack)["pid"] not in victims
    events = stack.status()["events"]
    assert not any(e["kind"] == "quarantine" for e in events), events  # no innocent blamed


def test_concurrent_writes_to_one_key_read_the_same_on_the_main_the_standby_and_after_restart(
        tmp_path: Path) -> None:
    # The main applies writes as it is acked, the standby as the WAL is tailed to it
    # and a restart replays the WAL: they agree only if all three follow the WAL's order.
    vault = tmp_path / "vault"
    stack = Stack(vault, ["--agent", str(ASYNC_AGENT), *FAST_HEARTBEAT])
    try:
        for round_ in range(3):
            bodies = [{"do": "set", "key": "same", "value": [round_, n]} for n in range(16)]
            assert [r.status_code for r in _concurrently(stack, bodies)] == [200] * 16
            seen = _value(stack, "same")
            victim = _main(stack)["pid"]
            os.kill(victim, signal.SIGKILL)
            assert _value(stack, "same") == seen  # the standby, promoted
            assert _main(stack)["pid"] != victim
    finally:
        stack.stop()
    restarted = Stack(vault, ["--agent", str(ASYNC_AGENT), *FAST_HEARTBEAT])
    try:
        assert _value(restarted, "same") == seen
    finally:
        restarted.stop()


def test_a_poison_among_concurrent_requests_is_found_apart_and_the_rest_answered(
        async_stack: Stack) -> None:
    stack = async_stack
    supervisor = stack.supervisor_pid()
    bodies = [{"do": "poison", "seconds": 0.3, "input": n} for n in range(7)]
    bodies.insert(3, {"do": "poison", "seconds": 0.3, "input": "poison"})
    responses = _concurrently(stack, bodies)
    poisoned = responses.pop(3)
    assert poisoned.status_code == 502, poisoned.text
    assert "quarantined" in poisoned.json()["error"]["message"]
    assert [r.status_code for r in responses] == [200] * 7, [r.text for r in responses]
    assert [r.json()["output"] for r in responses] == list(range(7))
    assert stack.supervisor_pid() == supervisor
    events = stack.status()["events"]
    quarantined = [e for e in events if e["kind"] == "quarantine"]
    assert len(quarantined) == 1, events  # the poison alone, none of the innocent
    assert stack.do("echo", input="still serving").json()["output"] == "still serving"


def test_an_async_handler_blocking_the_loop_is_a_hang_and_its_instance_replaced(
        async_stack: Stack) -> None:
    stack = async_stack
    victim = _main(stack)["pid"]
    response = stack.do("block", seconds=6)  # past the 2 s heartbeat timeout, twice
    assert response.status_code == 502, response.text
    assert "quarantined" in response.json()["error"]["message"]
    assert stack.do("echo", input="alive").json()["output"] == "alive"
    assert _main(stack)["pid"] != victim
    events = stack.status()["events"]
    assert any(e["kind"] == "hang" and "heartbeat" in e["reason"] for e in events), events


def test_a_request_past_its_deadline_times_out_alone_and_the_instance_keeps_serving(
        async_stack: Stack) -> None:
    stack = async_stack
    before = _main(stack)["pid"]

    def post(body: dict[str, Any], **extra: Any) -> httpx.Response:
        with _client(stack) as client:
            return client.post("/v1/requests", json={"input": body, **extra})

    with ThreadPoolExecutor(5) as pool:
        slow = pool.submit(post, {"do": "sleep", "seconds": 60}, deadline_ms=500)
        quick = [pool.submit(post, {"do": "sleep", "seconds": 0.2, "input": n})
                 for n in range(4)]
        assert slow.result().status_code == 504, slow.result().text
        assert [q.result().json()["output"] for q in quick] == list(range(4))
    assert _main(stack)["pid"] == before  # the instance cancelled it; nothing was killed
    assert _main(stack)["in_flight"] == 0


def test_past_the_queue_limit_clients_get_503_with_retry_after(tmp_path: Path) -> None:
    stack = Stack(tmp_path / "vault", ["--agent", str(NARROW_AGENT), "--max-queued", "2",
                                       *FAST_HEARTBEAT])
    try:
        responses = _concurrently(stack, [{"seconds": 3, "input": n} for n in range(12)])
    finally:
        stack.stop()
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 503}, statuses
    refused = [r for r in responses if r.status_code == 503]
    assert refused, statuses  # 2 served at once + 2 waiting: the rest turned away
    assert statuses.count(200) >= 2
    for response in refused:
        assert int(response.headers["Retry-After"]) >= 1
        assert response.json()["error"]["type"] == "Overloaded"


ASYNC_BASE = """
import asyncio
from project_o import Agent

agent = Agent("evolving-async")
DELAY = 0.02


@agent.handler
async def handle(ctx, request):
    if request.get("do") == "set":
        await ctx.memory.aset(request["key"], request["value"])
        return "ok"
    if request.get("do") == "get":
        return ctx.memory.get(request["key"])
    await asyncio.sleep(DELAY)
    return {"n": request.get("n")}
"""
FASTER = ASYNC_BASE.replace("DELAY = 0.02", "DELAY = 0.0")
CRASHING = ASYNC_BASE.replace('    return {"n": request.get("n")}',
                              '    import os\n    os._exit(3)')
FAST_STATS = {"min_samples": 20, "max_samples": 200, "stages": [0.5, 1.0],
              "validation_requests": 20}
FINISHED = ("promoted", "rejected", "rolled_back", "aborted")


def _drive_until_done(stack: Stack, experiment_id: str, clients: int = 8) -> dict[str, Any]:
    """Concurrent clients (every fifth request a write) until the experiment ends."""
    done = threading.Event()
    written: dict[str, tuple[int, str]] = {}
    failures: list[str] = []
    lock = threading.Lock()

    def client(index: int) -> None:
        with _client(stack) as http:
            for n in range(2000):
                if done.is_set():
                    return
                if n % 5 == 0:
                    key = f"c{index}-{n}"
                    body = {"do": "set", "key": key, "value": n}
                else:
                    key, body = "", {"n": n}
                response = http.post("/v1/requests", json={"input": body})
                with lock:
                    if response.status_code != 200:
                        failures.append(response.text)
                    elif key:
                        written[key] = (n, response.json()["version"])

    assert stack.http is not None
    with ThreadPoolExecutor(clients) as pool:
        futures = [pool.submit(client, i) for i in range(clients)]
        deadline = time.monotonic() + 600
        state: dict[str, Any] = {}
        while time.monotonic() < deadline:
            state = stack.http.get(f"/v1/evolution/experiments/{experiment_id}").json()
            if state["status"] in FINISHED:
                break
            time.sleep(0.2)
        done.set()
        for future in futures:
            future.result()
    assert failures == []  # the clients lost nothing, whatever the candidate did
    candidate = state.get("candidate_version")
    for key, (value, version) in written.items():  # this agent's "get" answers the value
        if version == candidate and state["status"] != "promoted":
            continue  # a canary's writes are quarantined in its overlay unless promoted
        response = stack.do("get", key=key)
        assert response.status_code == 200 and response.json()["output"] == value, key
    return state


@pytest.mark.parametrize(("source", "kind", "outcomes"), [
    (FASTER, "shadow", ("promoted",)),
    (CRASHING, "canary", ("rolled_back", "rejected")),
], ids=["faster-shadow-promoted", "crashing-canary-rolled-back"])
def test_shadow_and_canary_under_concurrent_traffic(tmp_path: Path, source: str, kind: str,
                                                    outcomes: tuple[str, ...]) -> None:
    agent = tmp_path / "evolving_async.py"
    agent.write_text(ASYNC_BASE)
    stack = Stack(tmp_path / "vault", ["--agent", str(agent), *FAST_HEARTBEAT])
    try:
        assert stack.http is not None
        created = stack.http.post("/v1/evolution/experiments", json={
            "candidate": {"source": source}, "kind": kind, "share": 1.0, **FAST_STATS})
        assert created.status_code == 201, created.text
        final = _drive_until_done(stack, created.json()["id"])
        assert final["status"] in outcomes, final
    finally:
        stack.stop()
