"""Parallel universes: mutants by different operators, ranked; the best handed to the cycle."""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest

from project_o.evolution.genome import Genome
from project_o.evolution.population import EvaluatorPool
from project_o.evolution.universes import EXPERIMENTS_PATH, run_universes, submit_winner

AGENT = '''
from project_o import Agent

agent = Agent("universes")
GAIN = agent.param("gain", 5, low=0, high=10)
SHIFT = agent.param("shift", 0.5, low=0.0, high=1.0)


@agent.evolvable
def value(gain, shift):
    return gain + shift * 2.0 - 1.0


@agent.handler
def handle(ctx, request):
    return value(ctx.params.gain, ctx.params.shift)
'''

TASK = '''
def evaluate(agent):
    return {"score": agent.function("value")(agent.params["gain"], agent.params["shift"])}
'''


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EvaluatorPool]:
    task = tmp_path_factory.mktemp("universes") / "task.py"
    task.write_text(TASK)
    with EvaluatorPool(task, workers=2) as started:
        yield started


def test_universes_rank_and_pick_the_best(pool: EvaluatorPool) -> None:
    main = Genome({"agent.py": AGENT})
    result = run_universes(main, pool.evaluate, 6, random.Random(3))
    assert len(result.ranked) == 6
    assert len({u.genome.id for u in result.ranked}) == 6
    assert len({u.operator for u in result.ranked}) >= 4  # different operators
    scores = [u.evaluation.fitness for u in result.ranked]
    assert scores == sorted(scores, reverse=True)
    assert result.main.evaluation.fitness == 5.0
    if result.winner is not None:
        assert result.winner is result.ranked[0] and scores[0] > 5.0
    else:
        assert scores[0] <= 5.0
    again = run_universes(main, pool.evaluate, 6, random.Random(3))
    assert [u.genome.id for u in again.ranked] == [u.genome.id for u in result.ranked]


def test_the_winner_is_submitted_as_a_canary() -> None:
    received: list[tuple[str, dict[str, Any], str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            received.append((self.path, body, self.headers.get("Authorization", "")))
            answer = json.dumps({"id": "exp-1", "stage": "shadow"}).encode()
            self.send_response(201)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        winner = Genome({"agent.py": AGENT}, {"gain": 9})
        answer = submit_winner(f"http://127.0.0.1:{server.server_port}", winner, token="t0k")
    finally:
        server.shutdown()
        server.server_close()
    assert answer == {"id": "exp-1", "stage": "shadow"}
    path, body, auth = received[0]
    assert path == EXPERIMENTS_PATH and auth == "Bearer t0k"
    assert body == {"kind": "canary", "candidate": {"files": {"agent.py": AGENT}}}

