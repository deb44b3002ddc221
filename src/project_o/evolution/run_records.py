"""What universes and red/blue runs leave behind for the dashboard and the report.

::

    project-o evolve --universes N --run-dir D
        D/VAULT/catalog.sqlite  events "evolution_run"        {config (mode universes), seed}
                                evaluations                   main + every mutant
                                events "evolution_universes"  {run seed, main, universes
                                                               [{id, operator, version, scores
                                                               per generation, kind}], winner}
    project-o evolve --adversarial --vault V
        V/redteam/rounds.jsonl  one line per round: {run, round, proposed, broke, inputs,
                                                     new_findings, suite, passed, score,
                                                     baseline, champion}

A universes run is one generation: every universe starts from the main
agent (generation 0, the main's score) and ends at its mutant's score
(generation 1). Round lines are appended and fsynced like findings, so a
round that was reported survives ``kill -9``; a torn last line is skipped.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Final

from project_o.evolution.genome import Genome
from project_o.evolution.operators import Operator
from project_o.evolution.run_store import RunStore
from project_o.evolution.task import Evaluation
from project_o.evolution.universes import UniversesResult, run_universes
from project_o.vault.atomic import fsync_directory

__all__ = ["ROUNDS_FILE", "UNIVERSES_EVENT", "append_line", "iter_rounds", "run_recorded_universes",
           "shown_inputs",
           "universes_record"]

#: the catalog event holding a universes run's outcome
UNIVERSES_EVENT: Final = "evolution_universes"
#: red/blue rounds, under the vault directory (one JSON object per line)
ROUNDS_FILE: Final = Path("redteam") / "rounds.jsonl"
#: red's proposals kept per round line (as text): enough to read, not a second suite
MAX_INPUTS_SHOWN: Final = 16


def universes_record(result: UniversesResult, run_seed: int) -> dict[str, Any]:
    """The outcome of a universes run as stored data: a score line per universe."""
    main_score = result.main.evaluation.fitness
    universes = [{"id": i, "operator": u.operator, "version": u.genome.id,
                  "kind": u.evaluation.kind, "scores": [main_score, u.evaluation.fitness]}
                 for i, u in enumerate(result.ranked, start=1)]
    return {"run_seed": run_seed, "main": {"version": result.main.genome.id, "score": main_score},
            "universes": universes,
            "winner": None if result.winner is None else result.winner.genome.id}


def append_line(path: Path, row: dict[str, Any]) -> None:
    """Append ``row`` as one JSON line, durably (fsync; the directory too when new)."""
    new = not path.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(row, sort_keys=True, default=repr) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode())
        os.fsync(fd)  # an fsync error propagates: never retried (see vault.atomic)
    finally:
        os.close(fd)
    if new:
        fsync_directory(path.parent)


def iter_rounds(vault: str | Path) -> Iterator[dict[str, Any]]:
    """The red/blue round lines stored in ``vault``, oldest first."""
    path = Path(vault) / ROUNDS_FILE
    if not path.exists():
        return
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue  # only a torn tail can be malformed: appends are whole lines
        if isinstance(row, dict):
            yield row


def shown_inputs(inputs: list[Any]) -> list[str]:
    """Red's proposals as short text (what a table shows)."""
    return [repr(value)[:120] for value in inputs[:MAX_INPUTS_SHOWN]]


def run_recorded_universes(run_dir: str | Path, main: Genome,
                           evaluate: Callable[..., dict[str, Evaluation]], count: int,
                           run_seed: int,
                           operators: Mapping[str, Operator] | None = None,
                           ) -> UniversesResult:
    """:func:`run_universes`, recorded in ``run_dir``'s catalog as it goes."""
    store = RunStore(run_dir)
    try:
        run_id = f"universes-{time.time_ns():x}"
        config = {"mode": "universes", "universes": count, "seed": run_seed,
                  "population": count, "generations": 0}  # one batch: "1 / 1" done
        store.start_run(run_id, config, main)  # the dashboard lists the run from here on

        def recorded(genomes: list[Genome]) -> dict[str, Evaluation]:
            found = evaluate(genomes)
            store.record(run_id, genomes, [found[g.id] for g in genomes])
            return found

        result = run_universes(main, recorded, count, random.Random(run_seed),
                               operators=operators)
        store.catalog.record_event(UNIVERSES_EVENT, run_id, data=universes_record(result,
                                                                                  run_seed))
        return result
    finally:
        store.close()
