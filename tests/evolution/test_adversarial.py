"""Red team vs blue team: the seeded bug in examples/red_blue is found, kept, and fixed.

Matches run on real evaluator pools (forked, sandboxed children); the fault
catalogue below checks that each way an input can break the agent reaches
the findings with the right kind, a crash and a hang in C code included.
"""

from __future__ import annotations

import json
import math
import random
import signal
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from project_o.cli import main as cli
from project_o.errors import InvalidArgument
from project_o.evolution.adversarial import (
    AdversarialConfig,
    Finding,
    FindingStore,
    run_adversarial,
)
from project_o.evolution.genome import Genome
from project_o.evolution.red_team import RedTeam, mutate
from project_o.evolution.referee import (
    judge,
    load_task_module,
    local_evaluators,
    open_referee,
    play_match,
)
from project_o.evolution.task import load_task
from project_o.runtime.loader import load_agent

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "red_blue"
#: small enough for two cores; the seeded bug is found in the first rounds (seed 0)
SMALL = AdversarialConfig(seed=0, rounds=12, red_inputs=12, blue_children=8, timeout_s=10)


def test_red_finds_the_seeded_bug_and_blue_fixes_it(tmp_path: Path) -> None:
    result = run_adversarial(EXAMPLE / "agent.py", EXAMPLE / "task.py", config=SMALL,
                             vault=tmp_path, evaluators=local_evaluators(workers=2))
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
    task = load_task_module(EXAMPLE / "task.py")
    winner = load_agent(result.winner_path).test_client()
    for value in [f.input for f in result.findings] + task.CASES + ["a=", "a=;b=2"]:
        assert task.check(value, winner.call(value)) is True, value


def test_the_vault_suite_carries_over_to_the_next_run(tmp_path: Path) -> None:
    config = AdversarialConfig(seed=0, rounds=2, red_inputs=12, patience=1, timeout_s=10)
    first = run_adversarial(EXAMPLE / "agent.py", EXAMPLE / "task.py", config=config,
                            vault=tmp_path, evaluators=local_evaluators(workers=2))
    assert first.findings
    # The seed again, red with another seed: the stored suite is where it starts.
    again = AdversarialConfig(seed=1, rounds=1, red_inputs=4, timeout_s=10, budget_s=0)
    second = run_adversarial(EXAMPLE / "agent.py", EXAMPLE / "task.py", config=again,
                             vault=tmp_path, evaluators=local_evaluators(workers=2))
    assert second.findings[:len(first.findings)] == first.findings
    assert second.history[0]["findings"] >= len(first.findings)
    assert second.stop_reason == "budget" and second.rounds == 1


def test_the_cli_runs_the_loop_and_prints_the_summary(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    status = cli(["evolve", "--adversarial", "--agent", str(EXAMPLE / "agent.py"),
                  "--task", str(EXAMPLE / "task.py"), "--seed", "0", "--rounds", "12",
                  "--vault", str(tmp_path), "--json"])
    summary = json.loads(capsys.readouterr().out)
    assert status == 0 and summary["passes_all_findings"] and summary["findings"]
    assert summary["stop_reason"] == "converged" and summary["diff"]
    stored = FindingStore(tmp_path).load()
    assert [f.to_dict() for f in stored] == summary["findings"]
    assert Path(summary["winner_path"]).is_file()


def test_a_seed_that_fails_the_original_task_is_refused_with_the_reason(tmp_path: Path) -> None:
    broken = tmp_path / "agent.py"
    broken.write_text((EXAMPLE / "agent.py").read_text().replace(
        "    result = {}\n", "    raise KeyError('seed bug')\n", 1))
    with pytest.raises(InvalidArgument, match="seed bug"):
        run_adversarial(broken, EXAMPLE / "task.py", config=SMALL,
                        evaluators=local_evaluators(workers=1))


def test_a_task_without_check_is_refused(tmp_path: Path) -> None:
    task = tmp_path / "task.py"
    task.write_text("def evaluate(agent):\n    return {'score': 1.0}\n")
    with pytest.raises(InvalidArgument, match="check"):
        run_adversarial(EXAMPLE / "agent.py", task)


# -- the referee against a catalogue of faulty inputs ---------------------------

FAULTY_AGENT = '''
import math, os, signal, time
from project_o import Agent

agent = Agent("faulty")


@agent.handler
def handle(ctx, request):
    if request == "raise":
        raise KeyError("no such key")
    if request == "slow":           # a Python-level hang: the input's alarm breaks it
        time.sleep(60)
    if request == "stuck":          # the alarm cannot break this: only SIGKILL ends it
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        time.sleep(60)
    if request == "exit":
        os._exit(3)
    if request == "nan":
        return {"value": math.nan}
    if request == "wrong":
        return {"value": -1}
    return {"value": len(request)}
'''

FAULTY_TASK = '''
SCORE_BOUNDS = (0.0, 1.0)


def check(text, output):
    return output == {"value": len(text)} or f"expected the length of {text!r}"


def evaluate(agent):
    return {"score": float(agent.call("ok") == {"value": 2})}
'''

#: input -> (kind, signature) of the finding it must produce; None: passes
CATALOGUE = {
    "ok": None,
    "raise": ("exception", "exception:KeyError"),
    "wrong": ("wrong", "wrong"),
    "nan": ("gamed", "gamed"),
    "slow": ("timeout", "timeout"),
    "exit": ("crash", "crash"),
    "stuck": ("timeout", "timeout"),
}


@pytest.fixture
def faulty(tmp_path: Path) -> Iterator[tuple[Genome, Any]]:
    """The faulty agent, and a referee on a one-worker pool (a short backstop for "stuck")."""
    task = tmp_path / "task.py"
    task.write_text(FAULTY_TASK)
    (tmp_path / "referee").mkdir()
    with open_referee(task, load_task_module(task), tmp_path / "referee",
                      local_evaluators(workers=1), timeout_s=1.0, input_timeout_s=0.2,
                      memory_mb=AdversarialConfig().memory_mb,
                      most_inputs=len(CATALOGUE)) as referee:
        yield Genome({"agent.py": FAULTY_AGENT}), referee


@pytest.mark.slow
def test_every_faulty_input_becomes_its_own_kind_of_finding(
        faulty: tuple[Genome, Any]) -> None:
    genome, referee = faulty
    # "exit" and "stuck" kill the whole match: it is replayed input by input.
    failures = referee.probe(genome, list(CATALOGUE))
    found = {value: None if f is None else (f[0], f[2]) for value, f in zip(CATALOGUE, failures)}
    assert found == CATALOGUE


def test_a_match_judges_every_input_in_one_evaluation(faulty: tuple[Genome, Any]) -> None:
    genome, referee = faulty
    inputs = ["ok", "raise", "wrong", "nan", "slow", "abc"]
    [verdict] = referee.play([genome], inputs)
    assert verdict.alive and verdict.score == 1.0 and verdict.passed == 2
    kinds = [None if f is None else f[0] for f in verdict.failures]
    assert kinds == [None, "exception", "wrong", "gamed", "timeout", None]
    # the next match has other inputs: nothing of this one leaks into it
    [again] = referee.play([genome], ["abc"])
    assert again.failures == [None]


def test_a_stored_finding_that_crashes_the_seed_is_no_broken_seed(tmp_path: Path) -> None:
    task, agent = tmp_path / "task.py", tmp_path / "agent.py"
    task.write_text(FAULTY_TASK)
    agent.write_text(FAULTY_AGENT)
    FindingStore(tmp_path / "vault").append(
        Finding("exit", "crash", "exit code 3", "crash", 1, "earlier"))
    config = AdversarialConfig(rounds=1, budget_s=0, red_inputs=2, blue_children=2,
                               timeout_s=1.0)
    result = run_adversarial(agent, task, config=config, vault=tmp_path / "vault",
                             evaluators=local_evaluators(workers=1))
    assert result.findings[0].input == "exit" and result.rounds == 1
    assert result.history[0]["findings"] >= 1


# -- play_match, in this process (real signals) -----------------------------------


def _candidate(handler: object) -> SimpleNamespace:
    return SimpleNamespace(call=handler)


def test_play_match_gives_the_evaluators_alarm_back(tmp_path: Path) -> None:
    task_file = tmp_path / "task.py"
    task_file.write_text("def evaluate(agent):\n    return {'score': 1.0}\n")
    match = tmp_path / "match.json"
    match.write_text(json.dumps({"match": 7, "inputs": [1, 2], "timeout_s": 5,
                                 "input_timeout_s": 0.05}))

    def handler(value: int) -> int:
        while value == 2:  # a hang the input's alarm must break
            pass
        return value

    previous = signal.signal(signal.SIGALRM, lambda *_: None)
    signal.setitimer(signal.ITIMER_REAL, 30)  # the evaluator's whole-candidate alarm
    try:
        metrics = play_match(load_task(task_file), _candidate(handler), match)
        left, _ = signal.getitimer(signal.ITIMER_REAL)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert 0 < left < 30  # re-armed with what was left of it, not lost
    assert signal.getsignal(signal.SIGALRM) is previous
    report = json.loads(metrics.pop("match_outcomes"))
    assert metrics == {"score": 1.0}
    assert report == {"match": 7, "outcomes": [{"output": 1}, {"timeout": 0.05}]}


def test_play_match_charges_a_hang_in_the_original_task_to_the_task(tmp_path: Path) -> None:
    task_file = tmp_path / "task.py"
    task_file.write_text("import time\n\ndef evaluate(agent):\n    time.sleep(60)\n")
    match = tmp_path / "match.json"
    match.write_text(json.dumps({"match": 1, "inputs": ["a"], "timeout_s": 0.05,
                                 "input_timeout_s": 1}))
    with pytest.raises(TimeoutError, match="evaluate"):
        play_match(load_task(task_file), _candidate(lambda value: value), match)


# -- pieces ------------------------------------------------------------------------


def test_judge_tells_the_failure_kinds_apart() -> None:
    task = load_task_module(EXAMPLE / "task.py")
    assert judge(task, "a=1", {"output": {"ok": {"a": "1"}}}) is None
    assert judge(task, "a=1", {"timeout": 0.25})[0] == "timeout"
    kind, _detail, signature = judge(task, "a=", {"error": "IndexError", "message": "x"})
    assert (kind, signature) == ("exception", "exception:IndexError")
    assert judge(task, "a=1", {"output": {"ok": {"a": math.nan}}})[0] == "gamed"
    assert judge(task, "a=1", {"output": [math.inf]})[0] == "gamed"
    assert judge(task, "a=1", {"output": {"ok": {"a": "2"}}})[0] == "wrong"
    assert judge(task, "a=1", {"output": "not a dict"})[0] == "wrong"


def test_red_is_deterministic_per_seed() -> None:
    task = load_task_module(EXAMPLE / "task.py")
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
