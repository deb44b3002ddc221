"""What the demo feeds the supervisor: the agent's source, its candidates, the facts.

A candidate is the demo agent's file with its evolvable ``search_facts``
(decorator to last line, found with :mod:`ast`) replaced by the text after
:data:`CANDIDATE_MARKER` in ``candidates/<name>.py``::

    agent.py                         candidates/lean.py
    ┌──────────────────────┐         ┌──────────────────────────┐
    │ imports, constants   │         │ imports (for lint only)  │
    │ @agent.evolvable     │ ◄─────  │ # -- candidate --        │
    │ def search_facts...  │  splice │ @agent.evolvable         │
    │ @agent.handler ...   │         │ def search_facts... + helpers
    └──────────────────────┘         └──────────────────────────┘

The facts are generated from a seeded :class:`random.Random`: each has a
unique subject word (what the demo asks about) and a long note, so that
reading every fact is real work for a linear scan.
"""

from __future__ import annotations

import ast
import random
from pathlib import Path

from project_o.errors import InvalidArgument

__all__ = [
    "AGENT_FILE",
    "CANDIDATE_MARKER",
    "EVOLVABLE",
    "FACT_COUNT",
    "UNSEEN_QUERIES",
    "base_source",
    "candidate_source",
    "demo_facts",
]

_HERE = Path(__file__).resolve().parent
#: the agent the demo serves first
AGENT_FILE = _HERE / "agent.py"
#: the line after which a candidate module's replacement text starts
CANDIDATE_MARKER = "# -- candidate --"
#: the evolvable function every candidate replaces
EVOLVABLE = "search_facts"
#: the facts the demo teaches (README.md: "teaches it 30 facts")
FACT_COUNT = 30
#: words in each fact's note: enough that re-reading every fact costs ~1 ms a query
NOTE_WORDS = 400
#: questions about words no fact contains (the base answers None; "indexed" raises)
UNSEEN_QUERIES = ("unicorn", "zeppelin", "quasar", "marmalade")

_SUBJECTS = (
    "otter", "falcon", "walnut", "glacier", "lantern", "meadow", "copper", "harbor",
    "violin", "cactus", "pebble", "comet", "saffron", "tundra", "beacon", "orchid",
    "anvil", "lagoon", "thimble", "juniper", "basalt", "kestrel", "quartz", "sorrel",
    "ember", "fjord", "mosaic", "nutmeg", "prism", "willow", "cobalt", "heron",
)
_FILLER = (
    "the", "a", "of", "and", "was", "near", "after", "before", "under", "over", "old", "new",
    "small", "large", "red", "blue", "green", "north", "south", "east", "west", "river",
    "stone", "road", "house", "tree", "field", "winter", "summer", "morning", "evening",
)


def base_source() -> str:
    """The demo agent's source text."""
    return AGENT_FILE.read_text()


def candidate_source(name: str) -> str:
    """The demo agent's source with ``search_facts`` replaced by candidate ``name``."""
    path = _HERE / "candidates" / f"{name}.py"
    if not path.is_file():
        known = sorted(p.stem for p in path.parent.glob("*.py") if p.stem != "__init__")
        raise InvalidArgument(f"no demo candidate {name!r}; expected one of {known}")
    text = path.read_text()
    if CANDIDATE_MARKER not in text:
        raise InvalidArgument(f"{path.name} has no {CANDIDATE_MARKER!r} line to splice after")
    replacement = text.split(CANDIDATE_MARKER, 1)[1].strip("\n") + "\n"
    return splice_function(base_source(), EVOLVABLE, replacement)


def splice_function(source: str, name: str, replacement: str) -> str:
    """``source`` with top-level function ``name`` (decorators included) replaced."""
    tree = ast.parse(source)
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            assert node.end_lineno is not None  # always set by ast.parse
            lines = source.splitlines(keepends=True)
            return "".join([*lines[: first - 1], replacement, *lines[node.end_lineno:]])
    raise InvalidArgument(f"no top-level function {name!r} in the source to replace")


def demo_facts(count: int = FACT_COUNT, seed: int = 5) -> list[tuple[str, str]]:
    """``count`` (subject, text) pairs; each subject word appears in its fact only."""
    if not 1 <= count <= len(_SUBJECTS):
        raise InvalidArgument(f"count must be 1..{len(_SUBJECTS)}, got {count}")
    rng = random.Random(seed)
    facts = []
    for subject in _SUBJECTS[:count]:
        number = rng.randrange(100, 1000)
        note = " ".join(rng.choice(_FILLER) for _ in range(NOTE_WORDS))
        facts.append((subject, f"the {subject} keeps the number {number} . {note}"))
    return facts
