"""Red vs blue (``project-o evolve --adversarial --vault V``), from ``V/redteam/findings.jsonl``.

Each finding is an input red found that blue's champion of that round
failed; grouped by round, they are the matches: who was champion, how
many inputs broke it, and of which kinds.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final

from project_o.errors import ProjectOError
from project_o.evolution.adversarial import FINDINGS_FILE, iter_findings
from project_o.evolution.run_records import iter_rounds

__all__ = ["MAX_FINDINGS", "red_team"]

#: findings listed (newest); the rounds table counts them all
MAX_FINDINGS: Final = 200


def red_team(vaults: Iterable[Path]) -> dict[str, Any]:
    """``{"rounds": [{round, blue, findings, kinds}], "matches": [...], "findings": [...]}``.

    ``matches`` are the stored round lines (red's proposals, how many broke
    the champion, the champion's score on the suite), of every vault given.
    """
    findings: list[dict[str, Any]] = []
    matches: list[dict[str, Any]] = []
    for vault in vaults:
        try:
            matches.extend({**m, "vault": str(vault)} for m in iter_rounds(vault))
        except OSError:
            pass  # an unreadable file is the adversarial loop's to report
        if (vault / FINDINGS_FILE).is_file():
            try:
                found = [f.to_dict() for f in iter_findings(vault)]
            except (ProjectOError, OSError, ValueError):
                continue  # a damaged file is the adversarial loop's to report
            findings.extend({**f, "vault": str(vault)} for f in found)
    rounds: dict[tuple[str, int, str], dict[str, Any]] = {}
    for finding in findings:
        key = (finding["vault"], finding["round"], finding["blue"])
        row = rounds.setdefault(key, {"vault": key[0], "round": key[1], "blue": key[2],
                                      "findings": 0, "kinds": {}})
        row["findings"] += 1
        row["kinds"][finding["kind"]] = row["kinds"].get(finding["kind"], 0) + 1
    return {"rounds": sorted(rounds.values(), key=lambda r: (r["vault"], r["round"])),
            "matches": matches[-MAX_FINDINGS:],
            "findings": [{**f, "input": repr(f["input"])[:200]}
                         for f in findings[-MAX_FINDINGS:]]}
