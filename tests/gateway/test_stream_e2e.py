"""WebSocket /v1/stream against a real supervisor: ctx.emit in an instance reaches the client."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from project_o.client import Client
from project_o.errors import ProjectOError
from tests.supervisor.harness import FAST_HEARTBEAT, TOKEN, Stack

AGENT = """
from project_o import Agent

agent = Agent("streamer")


@agent.handler
def handle(ctx, request):
    if request == "stream two":  # what `project-o ask` sends: text
        request = {"do": "stream", "n": 2}
    do = request.get("do")
    if do == "stream":
        count = request.get("n", 3)
        for n in range(count):
            ctx.emit({"token": n})
        return {"emitted": count}
    if do == "unsendable":
        ctx.emit({1, 2})  # a set: not MessagePack, so not streamable
        return "not reached"
    if do == "raise":
        raise ValueError("asked to fail")
    return request
"""
#: a client-side guard so a stuck server fails the test instead of hanging it
RECV_TIMEOUT_S = 30.0


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("stream")
    agent = root / "streamer.py"
    agent.write_text(AGENT)
    running = Stack(root / "vault", ["--agent", str(agent), *FAST_HEARTBEAT])
    yield running
    running.stop()


@pytest.fixture
def ws(stack: Stack) -> Iterator[ClientConnection]:
    assert stack.http is not None
    url = f"ws://127.0.0.1:{stack.http.base_url.port}/v1/stream"
    with connect(
        url, additional_headers={"Authorization": f"Bearer {TOKEN}"}, proxy=None
    ) as socket:
        yield socket


def exchange(socket: ClientConnection, request: Any) -> list[dict[str, Any]]:
    """Send one request; every message up to and including its output or error."""
    socket.send(json.dumps(request))
    messages = [json.loads(socket.recv(RECV_TIMEOUT_S))]
    while messages[-1]["type"] in ("accepted", "event"):
        messages.append(json.loads(socket.recv(RECV_TIMEOUT_S)))
    return messages


def test_three_events_then_the_output(stack: Stack, ws: ClientConnection) -> None:
    accepted, *events, output = exchange(ws, {"input": {"do": "stream"}})

    assert accepted["type"] == "accepted"
    assert events == [{"type": "event", "data": {"token": n}} for n in range(3)]
    assert output["type"] == "output"
    assert output["request_id"] == accepted["request_id"]
    assert output["output"] == {"emitted": 3}
    assert output["version"] == stack.status()["version"]
    assert output["latency_ms"] > 0


def test_many_events_arrive_complete_and_in_order(ws: ClientConnection) -> None:
    *_, output = messages = exchange(ws, {"input": {"do": "stream", "n": 500}})
    tokens = [m["data"]["token"] for m in messages if m["type"] == "event"]
    assert tokens == list(range(500))
    assert output["output"] == {"emitted": 500}
    assert "dropped_events" not in output


def test_a_streamed_answer_can_be_rated(stack: Stack, ws: ClientConnection) -> None:
    accepted, *_ = exchange(ws, {"input": {"do": "stream"}})
    assert stack.http is not None
    response = stack.http.post(
        "/v1/feedback", json={"request_id": accepted["request_id"], "score": 1}
    )
    assert response.status_code == 202, response.text
    assert response.json()["stored"] is True


def test_handler_errors_come_as_error_messages_on_a_live_socket(ws: ClientConnection) -> None:
    accepted, error = exchange(ws, {"input": {"do": "raise"}})
    assert (error["type"], error["status"]) == ("error", 502)
    assert error["error"]["type"] == "RequestFailed"
    assert error["error"]["kind"] == "ValueError"
    assert error["error"]["request_id"] == accepted["request_id"]
    assert exchange(ws, {"input": {"do": "stream", "n": 1}})[-1]["output"] == {"emitted": 1}


def test_an_event_that_cannot_be_sent_fails_the_handler(ws: ClientConnection) -> None:
    _, error = exchange(ws, {"input": {"do": "unsendable"}})
    assert error["error"]["type"] == "RequestFailed"
    assert error["error"]["kind"] == "InvalidArgument"


def test_without_a_stream_emit_is_silent_but_still_checked(stack: Stack) -> None:
    streamed = stack.ask({"do": "stream"})
    assert streamed.status_code == 200
    assert streamed.json()["output"] == {"emitted": 3}
    unsendable = stack.ask({"do": "unsendable"})
    assert unsendable.status_code == 502
    assert unsendable.json()["error"]["kind"] == "InvalidArgument"


def test_bad_messages_are_refused_and_the_socket_stays_open(ws: ClientConnection) -> None:
    ws.send("{oops")
    error = json.loads(ws.recv(RECV_TIMEOUT_S))
    assert (error["type"], error["status"], error["error"]["type"]) == ("error", 400, "InvalidJSON")
    (refused,) = exchange(ws, {"input": 1, "deadline_ms": -5})
    assert (refused["status"], refused["error"]["type"]) == (422, "InvalidRequest")
    assert exchange(ws, {"input": {"say": "fine"}})[-1]["output"] == {"say": "fine"}


def test_the_python_client_streams_with_a_ticket_never_the_token(stack: Stack) -> None:
    client = Client(stack.vault, token=TOKEN)
    url = client.stream_url()
    assert TOKEN not in url and "ticket=" in url
    seen: list[Any] = []
    answer = client.stream({"do": "stream", "n": 4}, on_event=seen.append)
    assert seen == [{"token": n} for n in range(4)]
    assert answer["output"] == {"emitted": 4}
    with pytest.raises(ProjectOError, match="RequestFailed"):
        client.stream({"do": "raise"})
    with connect(url, proxy=None):  # the ticket stream_url() fetched was never used: good once
        pass
    with pytest.raises(InvalidStatus):
        connect(url, proxy=None)


def test_ask_stream_prints_the_events_and_the_answer(stack: Stack) -> None:
    env = {**os.environ, "PROJECT_O_TOKEN": TOKEN}
    done = subprocess.run(
        [sys.executable, "-m", "project_o.cli", "ask", "--stream", "--vault", str(stack.vault),
         "stream two"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert [line for line in done.stderr.splitlines() if "event:" in line] == [
        '  event: {"token": 0}', '  event: {"token": 1}']
    assert '"emitted": 2' in done.stdout
    assert TOKEN not in done.stdout + done.stderr
