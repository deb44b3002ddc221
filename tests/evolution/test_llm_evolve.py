"""LLM proposals in a GA run, against the local OpenAI-compatible server.

Artifacts of the parent in the prompt, two models under the cost-aware
bandit, tokens and cost per model and per candidate in the catalog, the
budget guard, exact resume, and the ``evolve`` command's output.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from project_o.evolution.artifacts import artifacts_of
from project_o.evolution.genetic import GAConfig, GAResult, GeneticAlgorithm
from project_o.evolution.genome import Genome
from project_o.evolution.llm_budget import Budget
from project_o.evolution.llm_ensemble import LLMEnsemble
from project_o.evolution.operators import LLMRewrite, build_prompt
from project_o.evolution.population import EvaluatorPool
from project_o.evolution.run_store import RunStore
from project_o.evolution.task import Evaluation
from tests.agent.openai_server import OpenAIServer, Status
from tests.evolution import llm_world
from tests.evolution.llm_world import MODELS, USAGE, call_cost, respond

CONFIG = GAConfig(population=4, generations=4, tournament=2, crossover=0.0, mutation=1.0,
                  elitism=1, seed=3)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return llm_world.write_world(tmp_path_factory.mktemp("world"))


@pytest.fixture(scope="module")
def pool(world: tuple[Path, Path]) -> Iterator[EvaluatorPool]:
    with EvaluatorPool(world[1], workers=2) as started:
        yield started


@pytest.fixture
def server() -> Iterator[OpenAIServer]:
    with OpenAIServer() as started:
        started.respond_with(respond)
        yield started


def _run(world: tuple[Path, Path], pool: EvaluatorPool, ensemble: LLMEnsemble,
         store: RunStore | None = None, *, resume: bool = False,
         reporter: Any = None) -> GAResult:
    operators = {LLMRewrite.name: LLMRewrite(ensemble, evaluations=ensemble.evaluation)}
    ga = GeneticAlgorithm(Genome.from_path(world[0]), pool.evaluate, CONFIG,
                          operators=operators, store=store, extensions=[ensemble],
                          reporter=reporter)
    return ga.run(resume=resume)


def _prompts(server: OpenAIServer) -> list[str]:
    return [body["messages"][-1]["content"] for body in server.requests]


def _rows(store: RunStore, sql: str, *args: Any) -> list[Any]:
    return [tuple(row) for row in store.catalog.query(sql, args)]


def test_the_parents_artifacts_are_in_the_prompt(world: tuple[Path, Path],
                                                 pool: EvaluatorPool,
                                                 server: OpenAIServer) -> None:
    _run(world, pool, llm_world.ensemble(server))
    prompts = _prompts(server)
    judged = [p for p in prompts if "### outcome\nok" in p]
    assert judged and any("(not evaluated yet)" in p for p in prompts)
    for prompt in judged:
        level = int(prompt.split("    return ")[1].split("\n")[0])
        # The task's failing cases for exactly this parent, and its score.
        assert f"### artifact:failing_cases\ncase {level + 1}: level() is {level}," in prompt
        assert f"### score\n{float(level)!r}" in prompt


def test_a_failed_parent_shows_its_traceback_and_output(world: tuple[Path, Path],
                                                        pool: EvaluatorPool) -> None:
    broken = llm_world.AGENT.replace(
        "    return 1", '    print("probe reached level()", flush=True)\n'
        '    raise KeyError("no level configured")')
    genome = Genome({"agent.py": broken})
    evaluation = pool.evaluate([genome])[genome.id]
    assert evaluation.kind == "error"
    shown = artifacts_of(evaluation)
    assert "KeyError" in shown["traceback"] and "no level configured" in shown["reason"]
    assert "probe reached level()" in shown["output"]
    prompt = build_prompt(genome, artifacts=shown)[1]["content"]
    assert "### traceback" in prompt and "probe reached level()" in prompt


def test_secrets_in_artifacts_are_masked() -> None:
    key = "sk-" + "A1b2C3d4E5f6G7h8I9j0"
    evaluation = Evaluation("x", {}, {"kind": "error", "reason": f"auth failed for {key}",
                                      "traceback": f"API_KEY={key}\nTraceback ..."})
    prompt = build_prompt(Genome({"agent.py": llm_world.AGENT}),
                          artifacts=artifacts_of(evaluation))[1]["content"]
    assert key not in prompt and "[REDACTED]" in prompt and "auth failed for" in prompt


def test_usage_and_cost_are_counted_per_model_and_candidate(
        world: tuple[Path, Path], pool: EvaluatorPool, server: OpenAIServer,
        tmp_path: Path) -> None:
    ensemble = llm_world.ensemble(server)
    store = RunStore(tmp_path)
    try:
        result = _run(world, pool, ensemble, store)
        rows = _rows(store, "SELECT model, COUNT(*), SUM(prompt_tokens),"
                     " SUM(completion_tokens), SUM(cost_usd), COUNT(version_id)"
                     " FROM llm_calls WHERE run_id = ? GROUP BY model", result.run_id)
        children = _rows(store, "SELECT version_id, model FROM llm_calls"
                         " WHERE run_id = ? AND version_id IS NOT NULL", result.run_id)
        details = {vid: store.genome(vid).details for vid, _ in children}
    finally:
        store.close()
    usage = ensemble.ledger.per_model()
    assert len(server.requests) == sum(u.calls for u in usage.values())
    for model, calls, prompt, completion, cost, kids in rows:
        assert (calls, prompt, completion) == (usage[model].calls, *(
            calls * t for t in USAGE[model]))
        assert cost == pytest.approx(calls * call_cost(model))
        assert usage[model].cost == pytest.approx(cost) and usage[model].children == kids
    for vid, model in children:  # each child says which model made it, and what it cost
        assert details[vid]["model"] == model == "smart"
        assert details[vid]["usage"]["prompt_tokens"] == USAGE["smart"][0]
        assert details[vid]["cost_usd"] == pytest.approx(call_cost("smart"))
    # The dull model was tried, found useless and left; the smart one improved the agent.
    stats = ensemble.bandit.stats()
    assert 1 <= stats["dull"]["pulls"] < stats["smart"]["pulls"]
    assert stats["dull"]["rewards"] == 0 and stats["smart"]["rewards"] >= 1
    assert result.evaluation.fitness > 1.0


def test_the_budget_stops_new_proposals_and_lets_proposed_ones_finish(
        world: tuple[Path, Path], pool: EvaluatorPool, server: OpenAIServer,
        tmp_path: Path) -> None:
    ensemble = llm_world.ensemble(server, Budget(max_tokens=500))
    store = RunStore(tmp_path)
    try:
        result = _run(world, pool, ensemble, store)
        tokens = [p + c for p, c in _rows(store, "SELECT prompt_tokens, completion_tokens"
                                          " FROM llm_calls ORDER BY id")]
        unevaluated = _rows(store, "SELECT version_id FROM llm_calls WHERE version_id IS NOT"
                            " NULL AND version_id NOT IN (SELECT version_id FROM evaluations)")
    finally:
        store.close()
    assert "--max-tokens 500" in result.stopped
    assert len(result.history) < CONFIG.generations + 1
    # The call that crossed the limit was the last one made.
    assert sum(tokens) >= 500 > sum(tokens[:-1])
    assert len(server.requests) == len(tokens)
    assert unevaluated == []  # every proposal made was evaluated before the run ended


def test_resuming_a_run_the_budget_stopped(world: tuple[Path, Path], pool: EvaluatorPool,
                                           server: OpenAIServer, tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    try:
        first = _run(world, pool, llm_world.ensemble(server, Budget(max_tokens=300)), store)
        made = len(server.requests)
        again = _run(world, pool, llm_world.ensemble(server, Budget(max_tokens=300)), store,
                     resume=True)
        assert (again.stopped, len(server.requests)) == (first.stopped, made)  # no new call
        more = llm_world.ensemble(server, Budget(max_tokens=100_000))
        last = _run(world, pool, more, store, resume=True)
    finally:
        store.close()
    assert first.stopped and not last.stopped
    assert len(last.history) == CONFIG.generations + 1 > len(first.history)
    assert more.ledger.total().calls == len(server.requests) > made


def test_a_failing_model_is_counted_and_the_run_goes_on(world: tuple[Path, Path],
                                                        pool: EvaluatorPool,
                                                        server: OpenAIServer,
                                                        tmp_path: Path) -> None:
    server.respond_with(lambda body: Status(503, "overloaded") if body["model"] == "dull"
                        else respond(body))
    ensemble = llm_world.ensemble(server)
    store = RunStore(tmp_path)
    try:
        result = _run(world, pool, ensemble, store)
        outcomes = _rows(store, "SELECT outcome FROM llm_calls WHERE model = 'dull'")
    finally:
        store.close()
    dull = ensemble.ledger.per_model()["dull"]
    assert dull.calls == dull.failed == len(outcomes) >= 1 and dull.tokens == 0
    assert all(o.startswith("error: ") and "HTTP 503" in o for (o,) in outcomes)
    assert len(result.history) == CONFIG.generations + 1 and result.evaluation.fitness > 1


def _interrupted_at(generation: int) -> Any:
    class Crash(Exception):
        pass

    class Reporter:
        def on_progress(self, gen: int, done: int, total: int) -> None:
            if gen == generation:  # its proposals are made, its evaluation under way
                raise Crash(f"interrupted in generation {gen}")

        def on_generation(self, stats: Any) -> None:
            pass

    return Crash, Reporter()


def test_resume_restores_bandit_ledger_and_open_proposals(
        world: tuple[Path, Path], pool: EvaluatorPool, server: OpenAIServer,
        tmp_path: Path) -> None:
    whole = llm_world.ensemble(server)
    whole_store = RunStore(tmp_path / "whole")
    whole_result = _run(world, pool, whole, whole_store)
    whole_store.close()
    made = len(server.requests)

    generation = random.Random(os.getpid()).randrange(1, CONFIG.generations + 1)
    crash, reporter = _interrupted_at(generation)
    store = RunStore(tmp_path / "killed")
    with pytest.raises(crash):
        _run(world, pool, llm_world.ensemble(server), store, reporter=reporter)
    crashed = len(server.requests)
    resumed = llm_world.ensemble(server)
    result = _run(world, pool, resumed, store, resume=True)
    rows = _rows(store, "SELECT COUNT(*) FROM llm_calls")[0][0]
    store.close()

    assert resumed.bandit.state() == whole.bandit.state()
    assert resumed.ledger.state() == whole.ledger.state()
    assert resumed.report()["open_proposals"] == whole.report()["open_proposals"]
    assert [g.id for g in result.population] == [g.id for g in whole_result.population]
    assert result.winner.id == whole_result.winner.id
    # The calls of the interrupted generation were made twice: counted, and charged.
    lost = resumed.ledger.lost
    assert lost.calls == rows - made > 0
    lost_models = [body["model"] for body in server.requests[crashed - lost.calls:crashed]]
    assert lost.tokens == sum(sum(USAGE[m]) for m in lost_models)


# -- the command ------------------------------------------------------------------------


def _base(world: tuple[Path, Path], run_dir: Path) -> list[str]:
    return [sys.executable, "-m", "project_o.evolution.evolve_cli", "--agent", str(world[0]),
            "--task", str(world[1]), "--population", "4", "--generations", "6",
            "--tournament", "2", "--crossover", "0", "--mutation", "1", "--elitism", "1",
            "--seed", "5", "--workers", "2", "--run-dir", str(run_dir), "--llm-only",
            "--llm-model", "smart", "--llm-model", "dull"]


def _command(world: tuple[Path, Path], run_dir: Path, *extra: str) -> list[str]:
    return [*_base(world, run_dir), "--llm-price", "smart=1.0,2.0", "--llm-price",
            "dull=0.5,0.5", *extra]


def test_each_model_may_have_its_own_endpoint(world: tuple[Path, Path],
                                              tmp_path: Path) -> None:
    with OpenAIServer() as first, OpenAIServer() as second:
        first.respond_with(respond)
        second.respond_with(respond)
        command = [*_base(world, tmp_path), "--llm-model", f"dull@{second.base_url}",
                   "--generations", "1", "--json"]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120,
                              env=_env(first), check=False)
    assert done.returncode == 0, done.stderr
    assert {b["model"] for b in first.requests} == {"smart"}
    assert {b["model"] for b in second.requests} == {"dull"}
    assert set(json.loads(done.stdout)["llm"]["models"]) == {"smart", "dull"}


def test_universes_may_be_proposed_by_the_llm(world: tuple[Path, Path], server: OpenAIServer,
                                              tmp_path: Path) -> None:
    done = subprocess.run([*_command(world, tmp_path), "--universes", "2", "--json"],
                          capture_output=True, text=True, timeout=120, env=_env(server),
                          check=False)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert [u["operator"] for u in report["ranked"]] == ["llm_rewrite"]  # dull made none
    assert report["llm"]["total"]["calls"] == len(server.requests) >= 2


def _env(server: OpenAIServer) -> dict[str, str]:
    return {**os.environ, "PROJECT_O_LLM_BASE_URL": server.base_url,
            "PROJECT_O_LLM_MAX_RETRIES": "0"}


def test_evolve_command_reports_llm_usage_and_stops_at_max_cost(
        world: tuple[Path, Path], server: OpenAIServer, tmp_path: Path) -> None:
    limit = 5 * call_cost("smart")
    done = subprocess.run(_command(world, tmp_path, "--max-cost", repr(limit), "--json"),
                          capture_output=True, text=True, timeout=120, env=_env(server),
                          check=False)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    llm = report["llm"]
    assert set(llm["models"]) == set(MODELS)
    assert llm["spent"]["cost"] >= limit and "--max-cost" in report["stopped"]
    assert llm["total"]["calls"] == len(server.requests)
    assert sum(r["calls"] for r in llm["per_generation"]) == len(server.requests)
    assert llm["bandit"]["smart"]["pulls"] + llm["bandit"]["dull"]["pulls"] == \
        llm["total"]["calls"]
    assert len(report["history"]) < 7
    # The progress lines on stderr carry the same running totals.
    assert f"llm  calls {llm['total']['calls']:>4}" in done.stderr


def test_evolve_command_prints_the_llm_table(world: tuple[Path, Path], server: OpenAIServer,
                                            tmp_path: Path) -> None:
    done = subprocess.run(_command(world, tmp_path, "--max-tokens", "400"),
                          capture_output=True, text=True, timeout=120, env=_env(server),
                          check=False)
    assert done.returncode == 0, done.stderr
    assert "LLM proposals per model" in done.stdout and "smart" in done.stdout
    assert "LLM calls per generation" in done.stdout
    assert "stopped early: LLM tokens" in done.stdout
    assert "── agent.py" in done.stdout  # the winner's diff, per file


@pytest.mark.parametrize(("extra", "message"), [
    (("--max-cost", "1", "--llm-price", "smart=1,1"), "needs a price for every model"),
    (("--llm-price", "smart=cheap"), "MODEL=PROMPT,COMPLETION"),
    (("--max-tokens", "-1"), "--max-tokens must be"),
])
def test_bad_llm_options_are_refused(world: tuple[Path, Path], tmp_path: Path,
                                     extra: tuple[str, ...], message: str) -> None:
    done = subprocess.run([*_base(world, tmp_path), *extra, "--json"], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2 and message in " ".join(done.stderr.split()), done.stderr


@pytest.mark.slow
def test_kill_9_and_resume_equals_an_uninterrupted_llm_run(
        world: tuple[Path, Path], server: OpenAIServer, tmp_path: Path) -> None:
    whole = subprocess.run(_command(world, tmp_path / "whole", "--json"), capture_output=True,
                           text=True, timeout=120, env=_env(server), check=True)
    expected = json.loads(whole.stdout)
    generation = random.Random(os.getpid()).randrange(5)
    process = subprocess.Popen(_command(world, tmp_path / "killed", "--json"),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               start_new_session=True, env=_env(server))
    assert process.stderr is not None
    for line in process.stderr:
        if line.startswith(f"gen {generation:>3}"):
            break
    assert process.poll() is None, "the run ended before it could be killed"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    process.stderr.close()
    resumed = json.loads(subprocess.run(
        _command(world, tmp_path / "killed", "--json", "--resume"), capture_output=True,
        text=True, timeout=120, env=_env(server), check=True).stdout)
    assert resumed["winner"] == expected["winner"]
    assert resumed["llm"]["bandit"] == expected["llm"]["bandit"]
    assert resumed["llm"]["total"] == expected["llm"]["total"]
    catalog = tmp_path / "killed" / "VAULT" / "catalog.sqlite"
    with sqlite3.connect(catalog) as conn:
        calls = conn.execute("SELECT COUNT(*) FROM llm_calls").fetchone()[0]
    assert calls == expected["llm"]["total"]["calls"] + resumed["llm"]["lost"]["calls"]
