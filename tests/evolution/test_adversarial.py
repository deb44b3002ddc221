"""Red team vs blue team: the seeded bug in examples/red_blue is found, kept, and fixed."""

from __future__ import annotations

import json
import random
from pathlib import Path
from types import SimpleNamespace

import pytest

from project_o.evolution.adversarial import (
    AdversarialConfig,
    Finding,
    FindingStore,
    RedTeam,
    judge,
    mutate,
    run_adversarial,
)
from project_o.evolution.backends import SubprocessBackend, load_task
from project_o.runtime.loader import load_agent

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "red_blue"


@pytest.mark.slow
def test_red_finds_the_seeded_bug_and_blue_fixes_it(tmp_path: Path) -> None:
    config = AdversarialConfig(seed=0, rounds=12, red_inputs=12, blue_children=8,
                               timeout_s=10, memory_mb=1024)
    result = run_adversarial(EXAMPLE / "agent.py", EXAMPLE / "task.py",
                             SubprocessBackend(workers=2), config=config, vault=tmp_path)
    # Red: the empty value crashes the seed parser with IndexError.
    crashes = [f for f in result.findings if f.signature == "exception:IndexError"]
    assert crashes, result.findings
    seed = load_agent(EXAMPLE / "agent.py").test_client()
    with pytest.raises(IndexError):
        seed.call(crashes[0].input)
    # The regression suite is in the vault, one durable line per finding.
    lines = (tmp_path / "redteam" / "findings.jsonl").read_text().splitlines()
    assert [json.loads(line)["input"] for line in lines] == [f.input for f in result.findings]
    # Blue: the promoted winner passes every finding and the original task.
    assert result.passes_all and result.stop_reason == "converged"
    assert result.winner.id != result.seed.id and result.winner_score == 1.0
    assert result.winner_path is not None and result.winner_path.exists()
    task = load_task(EXAMPLE / "task.py")
    winner = load_agent(result.winner_path).test_client()
    for value in [f.input for f in result.findings] + task.CASES + ["a=", "a=;b=2"]:
        assert task.check(value, winner.call(value)) is True, value


def test_judge_tells_the_failure_kinds_apart() -> None:
    task = load_task(EXAMPLE / "task.py")
    assert judge(task, "a=1", {"output": {"ok": {"a": "1"}}}) is None
    assert judge(task, "a=1", {"timeout": 0.25})[0] == "timeout"
    kind, _detail, signature = judge(task, "a=", {"error": "IndexError", "message": "x"})
    assert (kind, signature) == ("exception", "exception:IndexError")
    assert judge(task, "a=1", {"output": {"ok": {"a": float("nan")}}})[0] == "gamed"
    assert judge(task, "a=1", {"output": {"ok": {"a": "2"}}})[0] == "wrong"
    assert judge(task, "a=1", {"output": "not a dict"})[0] == "wrong"


def test_red_is_deterministic_per_seed() -> None:
    task = load_task(EXAMPLE / "task.py")
    first = RedTeam(task, random.Random(7)).propose(20)
    second = RedTeam(task, random.Random(7)).propose(20)
    assert first == second and len(set(first)) == 20
    assert RedTeam(task, random.Random(8)).propose(20) != first


def test_mutation_keeps_the_type() -> None:
    rng = random.Random(1)
    for value in ["a=1;b=2", 5, 2.5, [1, "x"], {"k": "v"}, True]:
        for _ in range(20):
            assert type(mutate(value, rng)) is type(value)


def test_hypothesis_strategies_feed_red() -> None:
    from hypothesis import strategies as st

    task = SimpleNamespace(strategy=lambda: st.text(alphabet="ab=;", min_size=1, max_size=6))
    values = RedTeam(task, random.Random(3)).propose(10)
    assert values == RedTeam(task, random.Random(3)).propose(10)
    assert all(isinstance(v, str) and v for v in values)


def test_finding_store_survives_a_torn_tail(tmp_path: Path) -> None:
    store = FindingStore(tmp_path)
    finding = Finding("a=", "exception", "IndexError", "exception:IndexError", 1, "abc")
    store.append(finding)
    with store.path.open("a") as handle:
        handle.write('{"input": "b=", "kind"')  # a crash in the middle of an append
    assert FindingStore(tmp_path).load() == [finding]
