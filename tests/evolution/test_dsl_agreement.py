"""What the operators read statically agrees with what the DSL sees when the code runs."""

from __future__ import annotations

import random
from pathlib import Path

from project_o.agent.params import resolve
from project_o.evolution.genome import Genome
from project_o.evolution.operators import default_operators, find_evolvables, param_specs
from project_o.runtime.loader import load_agent
from tests.evolution.samples import AGENT, AGENT_B

#: the sample agent with its non-literal declaration made importable
RUNNABLE = AGENT.replace('agent = Agent("sample")',
                         'agent = Agent("sample")\n\n\ndef compute_limit():\n    return 40\n')
RUNNABLE_B = AGENT_B.replace('agent = Agent("sample")',
                             'agent = Agent("sample")\n\n\ndef compute_limit():\n    return 40\n')


def test_static_declarations_match_the_dsl(tmp_path: Path) -> None:
    genome = Genome({"agent.py": RUNNABLE})
    agent = load_agent(genome.write_to(tmp_path / genome.id))
    declared = agent.params_spec()
    static = {spec.name: spec for spec in param_specs(genome)}
    assert set(static) == set(declared) - {"limit"}  # limit's default is computed at import
    for name, spec in static.items():
        real = declared[name]
        assert (spec.default, spec.low, spec.high, spec.choices) == (
            real.default, real.low, real.high, real.choices), name
        assert spec.kind == ("choice" if real.choices is not None else real.type)
    assert [fn.qualname for fn in find_evolvables(genome)] == list(agent.evolvables)


def test_every_operators_child_imports_and_its_params_resolve(tmp_path: Path) -> None:
    parent, donor = Genome({"agent.py": RUNNABLE}), Genome({"agent.py": RUNNABLE_B}, {"top_k": 9})
    made = 0
    for name, operator in default_operators().items():
        for seed in range(3):
            child = operator.apply(parent, random.Random(seed), donors=[donor])
            if child is None:
                continue
            agent = load_agent(child.write_to(tmp_path / f"{name}-{seed}-{child.id}"))
            values = resolve(agent.params_spec(), child.params)  # raises if a value is refused
            assert all(values[k] == v for k, v in child.params.items())
            made += 1
    assert made >= 25
