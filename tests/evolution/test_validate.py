"""Static validation: structure, compile, params, then the caller's quick checks."""

from __future__ import annotations

import pytest

from project_o.evolution.genome import Genome
from project_o.evolution.validate import MAX_GENOME_BYTES, ValidationResult, validate
from tests.evolution.samples import sample


def test_a_good_genome_passes() -> None:
    result = validate(sample(top_k=3))
    assert result == ValidationResult(True, "passed") and result


def test_code_that_does_not_compile_fails_at_compile_with_file_and_line() -> None:
    genome = Genome({"agent.py": "x = 1\n", "helpers.py": "def f(:\n    pass\n"})
    result = validate(genome)
    assert not result and result.stage == "compile"
    assert "helpers.py:1" in result.reason


@pytest.mark.parametrize("source", ["break\n", "return 1\n", "(" * 300 + ")" * 300 + "\n",
                                    "async def f():\n    yield from g()\n"])
def test_errors_only_the_compiler_sees_are_reported_not_raised(source: str) -> None:
    result = validate(Genome({"a.py": source}))
    assert not result.ok and result.stage == "compile" and result.reason.startswith(
        "does not compile: a.py")


def test_params_outside_their_declaration_fail() -> None:
    for params, words in [({"top_k": 50}, "in [1, 20]"), ({"top_k": 2.5}, "a int"),
                          ({"mode": "magic"}, "one of"), ({"verbose": 1}, "bool")]:
        result = validate(sample(**params))
        assert not result and result.stage == "params", params
        assert words in result.reason and repr(next(iter(params.values()))) in result.reason


def test_structure_needs_python_and_a_sane_size() -> None:
    assert validate(Genome({"README.md": "hello"})).stage == "structure"
    huge = Genome({"a.py": "#" * (MAX_GENOME_BYTES + 1)})
    result = validate(huge)
    assert result.stage == "structure" and "over the limit" in result.reason


def test_quick_checks_run_in_order_after_the_static_stages() -> None:
    calls: list[str] = []

    def imports_fine(genome: Genome) -> str | None:
        calls.append("imports_fine")
        return None

    def answers_hello(genome: Genome) -> str | None:
        calls.append("answers_hello")
        return "answered 'bye' to 'hello'"

    def never_reached(genome: Genome) -> str | None:
        calls.append("never_reached")
        return None

    checks = [imports_fine, answers_hello, never_reached]
    result = validate(sample(), quick_checks=checks)
    assert result == ValidationResult(False, "quick_checks",
                                      "answers_hello: answered 'bye' to 'hello'")
    assert calls == ["imports_fine", "answers_hello"]
    calls.clear()
    assert validate(Genome({"a.py": "def (:\n"}), quick_checks=checks).stage == "compile"
    assert calls == []


def test_a_check_that_raises_fails_the_candidate_not_the_caller() -> None:
    def broken(genome: Genome) -> str | None:
        raise KeyError("boom")

    result = validate(sample(), quick_checks=[broken])
    assert not result and result.reason == "broken raised KeyError: 'boom'"


def test_values_for_undeclared_params_fail_but_non_literal_declarations_count() -> None:
    result = validate(sample(renamed=1))
    assert result.stage == "params" and "['renamed']" in result.reason
    assert validate(sample(limit=7)).ok  # declared with a non-literal default
