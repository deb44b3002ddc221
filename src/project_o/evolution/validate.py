"""Static validation of a candidate genome, before it runs anywhere.

::

    genome ─► structure ─► compile ─► params ─► quick_checks ─► ValidationResult(ok=True)
                  │            │          │            │
                  └────────────┴──────────┴────────────┴──► ValidationResult(ok=False,
                                                                stage, reason)  first failure

    structure     has a .py file; total size under MAX_GENOME_BYTES
    compile       every .py file compiles (parsed and turned into bytecode, not run)
    params        every param value is for a declared agent.param, and fits its
                  bounds / choices
    quick_checks  caller-supplied callables(genome) -> None or a reason; the
                  supervisor adds "imports in its own zygote" and the agent's
                  own checks here, since those run code and this module never does

Nothing here imports or executes agent code, so it is safe to call in the
supervisor on anything an operator (or a language model) produced.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from project_o.evolution.genome import Genome
from project_o.evolution.operators.base import syntax_problem
from project_o.evolution.operators.params import declared_names, param_specs

__all__ = [
    "MAX_GENOME_BYTES",
    "STAGES",
    "QuickCheck",
    "ValidationResult",
    "validate",
]

#: largest candidate accepted (all files together): real agents are kilobytes to a
#: few megabytes; anything bigger is a runaway rewrite, not a version to run
MAX_GENOME_BYTES = 16 * 1024 * 1024

#: the stages, in the order they run
STAGES = ("structure", "compile", "params", "quick_checks")

#: a check: ``None`` when the genome passes, else the reason it fails
QuickCheck = Callable[[Genome], "str | None"]


@dataclass(frozen=True)
class ValidationResult:
    """``ok``; else the ``stage`` that failed and the ``reason``."""

    ok: bool
    stage: str
    reason: str = ""

    def __bool__(self) -> bool:
        return self.ok


def validate(genome: Genome, *, quick_checks: Sequence[QuickCheck] = ()) -> ValidationResult:
    """Run the stages in order and stop at the first failure.

    A quick check that raises fails validation with the exception as its
    reason; it never escapes.
    """
    for stage, problem in (("structure", _structure), ("compile", _compile),
                           ("params", _params)):
        reason = problem(genome)
        if reason is not None:
            return ValidationResult(False, stage, reason)
    for check in quick_checks:
        reason = _run_check(check, genome)
        if reason is not None:
            return ValidationResult(False, "quick_checks", reason)
    return ValidationResult(True, "passed")


def _structure(genome: Genome) -> str | None:
    if not any(name.endswith(".py") for name in genome.sources):
        return f"genome {genome.id} has no .py file (files: {sorted(genome.sources)})"
    size = sum(len(text.encode()) for text in genome.sources.values())
    if size > MAX_GENOME_BYTES:
        return f"genome {genome.id} is {size} bytes, over the limit of {MAX_GENOME_BYTES}"
    return None


def _compile(genome: Genome) -> str | None:
    problem = syntax_problem(genome.sources)
    return None if problem is None else f"does not compile: {problem}"


def _params(genome: Genome) -> str | None:
    undeclared = sorted(set(genome.params) - declared_names(genome))
    if undeclared:
        return (f"values for params the code does not declare: {undeclared}; the agent would "
                "refuse them at load (a mutation removed or renamed an agent.param?)")
    for spec in param_specs(genome):
        if spec.name in genome.params and not spec.allows(genome.params[spec.name]):
            rule = (f"one of {list(spec.choices)!r}" if spec.choices is not None
                    else f"a {spec.kind} in [{spec.low}, {spec.high}]")
            return (f"param {spec.name!r} is {genome.params[spec.name]!r}, expected {rule} "
                    "as declared by agent.param()")
    return None


def _run_check(check: QuickCheck, genome: Genome) -> str | None:
    name = getattr(check, "__name__", repr(check))
    try:
        reason = check(genome)
    except Exception as exc:  # noqa: BLE001 - a broken check fails the candidate, not us
        return f"{name} raised {type(exc).__name__}: {exc}"
    return None if reason is None else f"{name}: {reason}"
