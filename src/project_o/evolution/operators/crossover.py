"""Crossover: a child made of two parents.

::

    cx_functions   parent A  f  g  h        child  f(A) g(B) h(A)   sources of A, with each
                   parent B  f' g' h'               evolvable function (matched by file and
                                                    dotted name) taken from B with probability
                                                    ``rate`` — at least one and, when several
                                                    differ, never all (that would copy B)
    cx_params      parent A  {x: 1, y: 2}   child  {x: 1, y: 5}     uniform crossover of the
                   parent B  {x: 3, y: 5}                            param values

The first parent is ``parent``; the second is drawn (with ``rng``) from
``donors``. Functions are copied as their exact source lines, so comments
inside them survive. The child lists both parents.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any, ClassVar

from project_o.evolution.genome import Genome
from project_o.evolution.operators.base import NoChild, OperatorBase, syntax_problem
from project_o.evolution.operators.evolvables import (
    EvolvableFunction,
    find_evolvables,
    inherit,
    segment,
    splice,
)
from project_o.evolution.operators.params import effective_params, param_specs

__all__ = ["DEFAULT_SWAP_RATE", "FunctionCrossover", "ParamCrossover"]

#: chance that each differing gene comes from the second parent: uniform crossover's 0.5
DEFAULT_SWAP_RATE = 0.5


class _Crossover(OperatorBase):
    def __init__(self, *, rate: float = DEFAULT_SWAP_RATE) -> None:
        super().__init__()
        if not 0.0 < rate <= 1.0:
            raise ValueError(f"rate must be in (0, 1], got {rate}")
        self.rate = rate

    def _mate(self, parent: Genome, rng: random.Random, donors: Sequence[Genome]) -> Genome:
        others = [d for d in donors if d.id != parent.id]
        if not others:
            raise NoChild("crossover needs a second, different parent in donors")
        return others[rng.randrange(len(others))]

    def _pick(self, differing: list[str], rng: random.Random) -> list[str]:
        """Genes taken from the second parent: each with ``rate``, and at least one."""
        taken = [gene for gene in differing if rng.random() < self.rate]
        if not taken:
            taken = [differing[rng.randrange(len(differing))]]
        elif len(taken) == len(differing) > 1:
            # Taking every difference would just copy the second parent.
            taken.pop(rng.randrange(len(taken)))
        return taken


class FunctionCrossover(_Crossover):
    """Each evolvable function from either parent."""

    name: ClassVar[str] = "cx_functions"

    def _propose(self, parent: Genome, rng: random.Random, donors: Sequence[Genome]) -> Genome:
        other = self._mate(parent, rng, donors)
        mine = {fn.key: fn for fn in find_evolvables(parent)}
        theirs = {fn.key: fn for fn in find_evolvables(other)}
        differing = [key for key in mine if key in theirs and _text(parent, mine[key])
                     != _text(other, theirs[key])]
        if not differing:
            raise NoChild(f"no evolvable function differs between {parent.id} and {other.id}")
        taken = self._pick(differing, rng)
        sources = dict(parent.sources)
        # Bottom-up, so splicing one function never shifts the lines of the next.
        for key in sorted(taken, key=lambda k: (mine[k].path, -mine[k].start)):
            fn = mine[key]
            sources[fn.path] = splice(sources[fn.path], fn, _text(other, theirs[key]))
        if sources == other.sources and parent.params == other.params:
            # Every difference taken: the child is the mate itself (apply() would find
            # its twin after compiling and hashing it; this is most of a population
            # whose genomes differ in one function).
            raise NoChild(f"the child is identical to {other.id}")
        if len(taken) == 1:
            [key] = taken
            inherit(parent.sources, sources, mine[key], _text(parent, mine[key]),
                    _text(other, theirs[key]))
        # Each taken def is whole and keeps its place (same name, same nesting), so
        # compiling the defs alone tells what compiling the file would.
        problem = syntax_problem({f"{mine[key].path}:{key}.py": _text(other, theirs[key])
                                  for key in taken})
        if problem is not None:
            raise NoChild(f"the combined code does not compile: {problem}")
        return parent.derive(operator=self.name, sources=sources, donors=[other],
                             details={"donor": other.id, "taken": sorted(taken)})


class ParamCrossover(_Crossover):
    """Uniform crossover of the values of the params the first parent declares."""

    name: ClassVar[str] = "cx_params"

    def _propose(self, parent: Genome, rng: random.Random, donors: Sequence[Genome]) -> Genome:
        other = self._mate(parent, rng, donors)
        specs = {spec.name: spec for spec in param_specs(parent)}
        mine, theirs = effective_params(parent, list(specs.values())), effective_params(other)
        # Only genes the child's code declares (the runtime refuses values for others).
        differing = [name for name in specs if name in theirs
                     and _differs(mine[name], theirs[name]) and specs[name].allows(theirs[name])]
        if not differing:
            raise NoChild(f"no param differs between {parent.id} and {other.id}")
        taken = self._pick(differing, rng)
        values = {**mine, **{name: theirs[name] for name in taken}}
        defaults = {name: spec.default for name, spec in specs.items()}
        params = {k: v for k, v in values.items()
                  if k not in defaults or _differs(v, defaults[k])}
        return parent.derive(operator=self.name, params=params, donors=[other],
                             details={"donor": other.id, "taken": taken})


def _text(genome: Genome, fn: EvolvableFunction) -> str:
    return segment(genome.sources[fn.path], fn)


def _differs(a: Any, b: Any) -> bool:
    return type(a) is not type(b) or a != b
