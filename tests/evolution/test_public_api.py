"""The public names of project_o.evolution stay importable and operators keep their names."""

from __future__ import annotations

import random

from project_o import evolution
from project_o.evolution import operators
from project_o.evolution.operators import Operator, default_operators
from tests.evolution.samples import sample, sample_b

OPERATOR_NAMES = {
    "mut_param_gauss", "mut_param_uniform", "mut_ast_constant", "mut_ast_operator",
    "mut_ast_delete", "mut_ast_duplicate", "mut_ast_reorder", "mut_ast_donor",
    "cx_functions", "cx_params",
}


def test_documented_names_are_exported() -> None:
    for module in (evolution, operators):
        for name in module.__all__:
            assert getattr(module, name) is not None, name
    assert {"Genome", "SequentialTest", "OperatorBandit", "validate"} <= set(evolution.__all__)


def test_default_operators_are_operators_keyed_by_their_stable_names() -> None:
    found = default_operators()
    assert set(found) == OPERATOR_NAMES  # names are recorded in catalogs: never rename
    assert all(isinstance(op, Operator) and op.name == name for name, op in found.items())
    with_llm = default_operators(client=lambda messages: "")
    assert set(with_llm) == OPERATOR_NAMES | {"llm_rewrite"}


def test_every_default_operator_makes_a_child_of_the_sample() -> None:
    parent = sample(threshold=0.2)
    for name, op in default_operators().items():
        child = op.apply(parent, random.Random(0), donors=[sample_b(threshold=0.8)])
        assert child is not None and child.operator == name, (name, op.last_reason)
