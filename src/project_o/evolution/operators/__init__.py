"""Mutation and crossover operators: parent genome (+ donors) + rng -> child genome.

::

    mut_param_gauss  mut_param_uniform                      params.py
    mut_ast_constant mut_ast_operator mut_ast_delete        ast_ops.py
    mut_ast_duplicate mut_ast_reorder mut_ast_donor
    cx_functions cx_params                                  crossover.py
    llm_rewrite                                             llm_rewrite.py (needs a chat client)

Every operator has a ``name`` and ``apply(parent, rng, *, donors=())``
returning a child (parents, operator and details recorded) or ``None``
(``last_reason`` says why). :func:`default_operators` builds one of each,
keyed by name: the arms of the operator bandit.
"""

from __future__ import annotations

from project_o.evolution.operators.ast_ops import (
    AST_OPERATORS,
    ConstantPerturbation,
    DonorSubtree,
    OperatorSwap,
    StatementDeletion,
    StatementDuplication,
    StatementReorder,
)
from project_o.evolution.operators.base import NoChild, Operator, OperatorBase, syntax_problem
from project_o.evolution.operators.crossover import FunctionCrossover, ParamCrossover
from project_o.evolution.operators.evolvables import EvolvableFunction, find_evolvables
from project_o.evolution.operators.llm_rewrite import (
    ChatClient,
    LLMRewrite,
    RewriteBrief,
    SearchReplace,
    apply_search_replace,
    build_prompt,
    parse_search_replace,
    redact,
)
from project_o.evolution.operators.params import (
    ParamGaussian,
    ParamSpec,
    ParamUniform,
    effective_params,
    param_specs,
)

__all__ = [
    "AST_OPERATORS",
    "ChatClient",
    "ConstantPerturbation",
    "DonorSubtree",
    "EvolvableFunction",
    "FunctionCrossover",
    "LLMRewrite",
    "NoChild",
    "Operator",
    "OperatorBase",
    "OperatorSwap",
    "ParamCrossover",
    "ParamGaussian",
    "ParamSpec",
    "ParamUniform",
    "RewriteBrief",
    "SearchReplace",
    "StatementDeletion",
    "StatementDuplication",
    "StatementReorder",
    "apply_search_replace",
    "build_prompt",
    "default_operators",
    "effective_params",
    "find_evolvables",
    "param_specs",
    "parse_search_replace",
    "redact",
    "syntax_problem",
]


def default_operators(client: ChatClient | None = None) -> dict[str, Operator]:
    """One of each offline operator by name, plus ``llm_rewrite`` when a chat client is given."""
    operators: list[Operator] = [ParamGaussian(), ParamUniform()]
    operators += [cls() for cls in AST_OPERATORS]
    operators += [FunctionCrossover(), ParamCrossover()]
    if client is not None:
        operators.append(LLMRewrite(client))
    return {op.name: op for op in operators}
