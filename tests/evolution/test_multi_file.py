"""Multi-file genomes: a package agent (examples/route_planner) evolves as one genome.

Operators and LLM edits change several modules in one child, diffs come per
file, and a child that breaks an import in another module fails cleanly:
recorded with its traceback, the run going on.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from project_o.evolution.genetic import GAConfig, GeneticAlgorithm
from project_o.evolution.genome import Genome
from project_o.evolution.population import EvaluatorPool
from project_o.evolution.run_store import RunStore
from tests.agent.openai_server import OpenAIServer, Reply

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "route_planner"
PACKAGE, TASK = EXAMPLE / "planner", EXAMPLE / "task.py"

NEAREST_NEIGHBOUR = '''    n = len(points)
    tour, left = [start % n], set(range(n)) - {start % n}
    while left:
        here = points[tour[-1]]
        tour.append(min(left, key=lambda c: (points[c][0] - here[0]) ** 2
                        + (points[c][1] - here[1]) ** 2))
        left.discard(tour[-1])
    return tour
'''
SEED_BODY = '''    n = len(points)
    start = start % n
    return [(start + i) % n for i in range(n)]
'''


def _spanning_edit() -> str:
    """One reply, two files: a nearest-neighbour first tour and 2-opt that always runs."""
    return (f"construct.py\n<<<<<<< SEARCH\n{SEED_BODY}=======\n{NEAREST_NEIGHBOUR}"
            ">>>>>>> REPLACE\n\nimprove.py\n<<<<<<< SEARCH\n    for _ in range(passes):\n"
            "=======\n    for _ in range(passes + 4):\n>>>>>>> REPLACE\n")


def _breaking_edit() -> str:
    """Renames a helper that another module imports by name."""
    return ("geometry.py\n<<<<<<< SEARCH\ndef tour_length(tour, points):\n=======\n"
            "def route_length(tour, points):\n>>>>>>> REPLACE\n")


def respond(body: dict[str, Any]) -> Reply:
    """``careful`` makes the spanning edit to an intact seed; ``reckless`` breaks the import."""
    prompt = body["messages"][-1]["content"]
    intact = "def tour_length(" in prompt
    if body["model"] == "reckless" and intact:
        return Reply(_breaking_edit(), usage=(300, 40))
    if body["model"] == "careful" and intact and SEED_BODY in prompt:
        return Reply(_spanning_edit(), usage=(300, 80))
    return Reply("No further change.", usage=(300, 5))


@pytest.fixture(scope="module")
def pool() -> Iterator[EvaluatorPool]:
    with EvaluatorPool(TASK, workers=2) as started:
        yield started


def _changed(seed: Genome, genome: Genome) -> set[str]:
    return {name for name in genome.sources if genome.sources[name] != seed.sources.get(name)}


def test_the_package_is_one_genome_of_several_modules() -> None:
    seed = Genome.from_path(PACKAGE)
    assert seed.is_package
    assert set(seed.sources) == {"__init__.py", "core.py", "geometry.py", "construct.py",
                                 "improve.py"}


def test_a_package_genome_evolves_with_operators_across_modules(
        pool: EvaluatorPool, tmp_path: Path) -> None:
    seed = Genome.from_path(PACKAGE)
    config = GAConfig(population=16, generations=3, tournament=3, mutation=0.6, elitism=2,
                      seed=7)
    store = RunStore(tmp_path)
    try:
        result = GeneticAlgorithm(seed, pool.evaluate, config, store=store).run()
        ok = [store.genome(vid) for vid, e in store.evaluations(result.run_id).items() if e.ok]
    finally:
        store.close()
    assert result.evaluation.fitness > pool.evaluate([seed])[seed.id].fitness + 1.0
    # Evaluated candidates differ from the seed in either module, and in both at once.
    touched = [_changed(seed, genome) for genome in ok]
    assert {"construct.py", "improve.py"} in touched
    assert {"improve.py"} in touched


def test_a_broken_import_in_another_module_is_a_clean_failure(pool: EvaluatorPool) -> None:
    seed = Genome.from_path(PACKAGE)
    sources = dict(seed.sources)
    sources["geometry.py"] = sources["geometry.py"].replace("def tour_length(",
                                                            "def route_length(")
    broken = seed.derive(operator="test", sources=sources)
    results = pool.evaluate([broken, seed])  # the same evaluator batch
    failure = results[broken.id].failure
    assert failure is not None and failure["kind"] == "error"
    assert "cannot import name 'tour_length'" in failure["traceback"]
    assert "improve.py" in failure["traceback"]  # the module whose import broke
    assert results[seed.id].ok  # the next candidate ran in the same evaluator, unharmed


def _env(server: OpenAIServer) -> dict[str, str]:
    return {**os.environ, "PROJECT_O_LLM_BASE_URL": server.base_url,
            "PROJECT_O_LLM_MAX_RETRIES": "0"}


def test_llm_edits_span_files_and_a_breaking_one_is_recorded(tmp_path: Path) -> None:
    with OpenAIServer() as server:
        server.respond_with(respond)
        command = [sys.executable, "-m", "project_o.evolution.evolve_cli", "--agent",
                   str(PACKAGE), "--task", str(TASK), "--population", "6", "--generations",
                   "3", "--tournament", "2", "--crossover", "0", "--mutation", "1",
                   "--elitism", "1", "--seed", "2", "--workers", "2", "--run-dir",
                   str(tmp_path), "--llm-only", "--llm-model", "reckless", "--llm-model",
                   "careful", "--json"]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120,
                              env=_env(server), check=False)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert set(report["diffs"]) == {"construct.py", "improve.py"}  # one diff per file
    assert "+    for _ in range(passes + 4):" in report["diffs"]["improve.py"]
    assert report["score"] > -4.2  # nearest neighbour + 2-opt, from about -11.2
    store = RunStore(tmp_path)
    try:
        rows = store.catalog.query("SELECT v.params, e.failure FROM versions v JOIN evaluations"
                                   " e ON e.version_id = v.id WHERE v.operator = 'llm_rewrite'")
    finally:
        store.close()
    details = [(json.loads(p)["details"], json.loads(f) if f else None) for p, f in rows]
    broken = [f for d, f in details if d["files"] == ["geometry.py"]]
    spanning = [f for d, f in details if d["files"] == ["construct.py", "improve.py"]]
    assert broken and all(f["kind"] == "error" and "cannot import name 'tour_length'"
                          in f["traceback"] for f in broken)
    assert spanning and all(f is None for f in spanning)
    assert report["llm"]["bandit"]["reckless"]["rewards"] == 0


def test_diffs_come_per_file_with_added_removed_and_params() -> None:
    seed = Genome.from_path(PACKAGE)
    sources = {k: v for k, v in seed.sources.items() if k != "geometry.py"}
    sources["improve.py"] = sources["improve.py"].replace("passes):", "passes + 1):")
    sources["extra/notes.py"] = "NOTE = 1\n"
    child = seed.derive(operator="test", sources=sources, params={"passes": 3})
    diffs = seed.file_diffs(child)
    assert list(diffs) == ["extra/notes.py", "geometry.py", "improve.py", "params"]
    assert diffs["extra/notes.py"].endswith("@@ -0,0 +1 @@\n+NOTE = 1\n")
    assert "-def tour_length(tour, points):" in diffs["geometry.py"]
    assert '+"passes": 3' in diffs["params"]
    assert seed.diff(child) == "".join(diffs.values())
