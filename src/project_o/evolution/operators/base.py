"""What a mutation operator is, and the plumbing every operator shares.

::

    parent ──► operator.apply(parent, rng, donors=...) ──► child (parents, operator, details set)
                     │                                 └─► None, with operator.last_reason
                     └── all randomness from ``rng``: the same seed gives the same child

Operators never run agent code: they read and rewrite text (``ast``,
``compile``) and return a new :class:`~project_o.evolution.genome.Genome`.
Whether the child imports and behaves is decided later, in its own zygote.

:class:`OperatorBase` is the template: subclasses implement
:meth:`OperatorBase._propose` and raise :class:`NoChild` with a readable
reason when they cannot make a child; :meth:`OperatorBase.apply` turns that
into ``None`` and keeps the reason in ``last_reason`` for the lineage.
"""

from __future__ import annotations

import functools
import random
import warnings
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import ClassVar, Protocol, runtime_checkable

from project_o.evolution.genome import Genome

__all__ = ["NoChild", "Operator", "OperatorBase", "syntax_problem"]


@runtime_checkable
class Operator(Protocol):
    """Makes a child genome from a parent (and maybe donors), or ``None``."""

    @property
    def name(self) -> str:
        """The operator's name, as recorded in the lineage (``mut_*``, ``cx_*``...)."""
        ...

    def apply(
        self, parent: Genome, rng: random.Random, *, donors: Sequence[Genome] = ()
    ) -> Genome | None:
        """A child of ``parent`` with parents/operator/details set, or ``None``."""
        ...


class NoChild(Exception):
    """Raised inside :meth:`OperatorBase._propose` when no child can be made.

    Control flow only: :meth:`OperatorBase.apply` catches it, so it never
    reaches a caller.
    """


class OperatorBase(ABC):
    """Template for operators: ``apply`` wraps ``_propose`` and records why it failed."""

    name: ClassVar[str]

    def __init__(self) -> None:
        #: why the last apply() returned None ("" after a success)
        self.last_reason = ""

    def apply(
        self, parent: Genome, rng: random.Random, *, donors: Sequence[Genome] = ()
    ) -> Genome | None:
        """A child of ``parent``, or ``None`` (the reason is in :attr:`last_reason`)."""
        self.last_reason = ""
        try:
            child = self._propose(parent, rng, donors)
        except NoChild as exc:
            self.last_reason = f"{self.name}: {exc}"
            return None
        twin = next((g for g in (parent, *donors) if g.id == child.id), None)
        if twin is not None:
            # Same content as a genome we already have: evaluating it again teaches nothing.
            self.last_reason = f"{self.name}: the child is identical to {twin.id}"
            return None
        return child

    @abstractmethod
    def _propose(self, parent: Genome, rng: random.Random, donors: Sequence[Genome]) -> Genome:
        """Make the child or raise :class:`NoChild` saying why not."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


def syntax_problem(sources: Mapping[str, str]) -> str | None:
    """``"file:line: message"`` for the first ``.py`` source that does not compile, else None.

    ``compile`` only parses and generates bytecode; nothing is executed. The
    answer is remembered per text: crossovers ask about the same donor defs
    again and again.
    """
    for name, text in sources.items():
        if name.endswith(".py"):
            problem = _compile_problem(name, text)
            if problem is not None:
                return problem
    return None


@functools.lru_cache(maxsize=8192)
def _compile_problem(name: str, text: str) -> str | None:
    try:
        with warnings.catch_warnings():
            # SyntaxWarnings ("'int' object is not callable") are the runtime's to report.
            warnings.simplefilter("ignore")
            compile(text, name, "exec", dont_inherit=True)
    except SyntaxError as exc:
        return f"{name}:{exc.lineno}: {exc.msg}"
    except (ValueError, RecursionError, MemoryError) as exc:
        # Deeply nested or enormous code fails in the compiler itself.
        return f"{name}: {type(exc).__name__}: {exc}"
    return None
