"""Native candidates under ``project-o evolve``'s evaluators: compiled and run in the sandbox.

The versions of examples/native_module go through a real EvaluatorPool:
each is loaded (its C compiled) in a sandboxed evaluator child; the ones
that segfault, wreck their heap or loop are recorded as such and cost no
other candidate; the correct native sieve scores above the Python one.
"""

from __future__ import annotations

import importlib.util

from project_o.evolution.genome import Genome
from project_o.evolution.population import EvaluatorPool
from tests.supervisor.harness import ROOT

EXAMPLE = ROOT / "examples" / "native_module"


def _native_source(variant: str | None) -> str:
    spec = importlib.util.spec_from_file_location("native_example_eval", EXAMPLE / "agent.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return str(module.native_source(variant))


def test_broken_native_candidates_are_recorded_and_the_correct_one_wins() -> None:
    python = Genome.from_path(EXAMPLE / "agent.py")
    versions = {variant: Genome({"agent.py": _native_source(variant)})
                for variant in (None, "segfault", "corrupt", "loop")}
    with EvaluatorPool(EXAMPLE / "task.py", workers=2, timeout_s=5.0) as pool:
        results = pool.evaluate([python, *versions.values()])
    by_id = dict(results)
    seed, native = by_id[python.id], by_id[versions[None].id]
    assert seed.ok and seed.metrics["wrong_cases"] == 0, seed
    assert native.ok and native.metrics["wrong_cases"] == 0, native
    assert native.fitness > seed.fitness  # less time on the same workload
    assert by_id[versions["segfault"].id].kind == "crash"
    assert by_id[versions["corrupt"].id].kind == "crash"
    looped = by_id[versions["loop"].id]
    assert looped.kind == "timeout", looped
