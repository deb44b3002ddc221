"""Native modules (milestone M2) against a real supervisor: C compiled in the candidate's zygote.

The agent is examples/native_module: a prime counter whose sieve is pure
Python. Its proposed next version has the sieve in C. A version whose C does
not compile is refused with the compiler's output; one that segfaults,
wrecks its heap or loops forever dies (or hangs) in its shadow and is
rejected while the main keeps answering; the correct one is promoted, and its
speed-up over the Python version is what the experiment measured.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from project_o.evolution.stats import BASELINE, CANDIDATE
from tests.supervisor.harness import FAST_HEARTBEAT, ROOT, Stack
from tests.supervisor.test_evolution_e2e import FAST_STATS, FINISHED, experiment, serving

EXAMPLE = ROOT / "examples" / "native_module"
#: the size of every question: the Python sieve takes milliseconds, the C one microseconds
N = 60_000
PRIMES_BELOW_N = 6057


def _example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("native_example", EXAMPLE / "agent.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


EXAMPLE_AGENT = _example()


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    running = Stack(tmp_path / "vault", ["--agent", str(EXAMPLE / "agent.py"), *FAST_HEARTBEAT])
    yield running
    running.stop()


def post(stack: Stack, source: str) -> Any:
    assert stack.http is not None
    return stack.http.post("/v1/evolution/experiments",
                           json={"kind": "shadow", "share": 1.0, "candidate": {"source": source},
                                 **FAST_STATS})


def until_done(stack: Stack, experiment_id: str, limit: int = 800) -> dict[str, Any]:
    """Ask questions until the experiment decides; every answer must be right."""
    for sent in range(limit):
        response = stack.ask({"n": N})
        assert response.status_code == 200, response.text  # users lose nothing
        assert response.json()["output"] == {"n": N, "primes": PRIMES_BELOW_N}
        if sent % 5 == 0:
            state = experiment(stack, experiment_id)
            if state["status"] in FINISHED:
                return state
    state = experiment(stack, experiment_id)
    assert state["status"] in FINISHED, state
    return state


def test_c_that_does_not_compile_is_refused_with_the_compiler_output(stack: Stack) -> None:
    broken = EXAMPLE_AGENT.native_source().replace("count++;", "count++")
    response = post(stack, broken)
    assert response.status_code == 422, response.text
    message = response.json()["error"]["message"]
    assert "failed to import in its zygote" in message
    assert "sieve.c did not compile" in message and "error:" in message, message
    assert stack.ask({"n": N}).json()["output"]["primes"] == PRIMES_BELOW_N


def test_a_segfaulting_native_module_proposed_by_the_agent_is_survived_and_rejected(
        stack: Stack) -> None:
    baseline = serving(stack)
    answer = stack.do("go native", variant="segfault").json()["output"]
    assert answer["status"] == "running", answer
    final = until_done(stack, answer["experiment_id"])
    assert final["status"] == "rejected", final
    assert final["reason"].startswith("died in the shadow"), final["reason"]
    assert final["hypothesis"] == "the sieve in C is faster"
    assert serving(stack) == baseline


@pytest.mark.slow
@pytest.mark.parametrize(("variant", "verdict"), [("corrupt", "died in the shadow"),
                                                  ("loop", "hang")])
def test_native_modules_that_corrupt_memory_or_loop_are_survived_and_rejected(
        stack: Stack, variant: str, verdict: str) -> None:
    baseline = serving(stack)
    response = post(stack, EXAMPLE_AGENT.native_source(variant))
    assert response.status_code == 201, response.text
    final = until_done(stack, response.json()["id"])
    assert final["status"] == "rejected", final
    assert verdict in final["reason"], final["reason"]
    assert serving(stack) == baseline


def test_the_correct_native_module_is_promoted_with_its_measured_speed_up(stack: Stack) -> None:
    response = post(stack, EXAMPLE_AGENT.native_source())
    assert response.status_code == 201, response.text
    created = response.json()
    final = until_done(stack, created["id"])
    assert final["status"] == "promoted", final
    assert "better on latency" in final["reason"], final["reason"]
    assert final["statistics"]["agreement"]["mean"][CANDIDATE] == 1.0  # the same answers
    latency = final["statistics"]["latency"]["mean"]
    speed_up = latency[BASELINE] / latency[CANDIDATE]
    assert speed_up > 1.0, latency
    assert serving(stack) == created["candidate_version"]
    reply = stack.ask({"n": N}).json()
    assert reply["version"] == created["candidate_version"]
    assert reply["output"] == {"n": N, "primes": PRIMES_BELOW_N}
