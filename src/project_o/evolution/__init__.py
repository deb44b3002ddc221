"""Evolution: versions of an agent, the operators that make new ones, and how they are judged.

::

    Genome ──────────────► operators (params, AST, crossover, LLM) ──► child Genome
      │  content-addressed        ▲ chosen by OperatorBandit              │
      │  sources + params         │ (Thompson sampling on outcomes)       ▼
      │                           │                                 validate(): structure,
      ▼                           │                                 compile, params, checks
    Catalog versions ◄── to_record()                                      │
                                  │                                       ▼
                                  └── success? ◄── SequentialTest (mSPRT): baseline vs candidate

Everything here is pure: no processes, no agent code imported or run. The
supervisor's evolution control and the genetic algorithm build on these pieces.
"""

from __future__ import annotations

from project_o.evolution.bandit import OperatorBandit
from project_o.evolution.genome import (
    PARAMS_FILE,
    Genome,
    genome_id,
    params_file_for,
    read_params,
    read_sources,
)
from project_o.evolution.operators import Operator, default_operators
from project_o.evolution.stats import SequentialTest
from project_o.evolution.validate import ValidationResult, validate

__all__ = [
    "PARAMS_FILE",
    "Genome",
    "Operator",
    "OperatorBandit",
    "SequentialTest",
    "ValidationResult",
    "default_operators",
    "genome_id",
    "params_file_for",
    "read_params",
    "read_sources",
    "validate",
]
