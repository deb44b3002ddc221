"""Novelty rejection: a candidate that equals or nearly equals an evaluated one is not run.

::

    genome ─► normalise: each source parsed and unparsed (comments, docstrings, layout
              gone) + its params as sorted JSON
           ─► content hash ──► seen?  ─────────────────────► twin (similarity 1.0)
           ─► 3-token shingles ─► MinHash (32) ─► LSH: 8 bands of 4 ─► candidates
                                    exact Jaccard on the candidates >= threshold? ─► twin
           ─► otherwise: novel; :meth:`NoveltyIndex.add` it once it is evaluated

    :func:`replace_twins` (the loop): a twin is mutated again, up to RETRIES
    times, and if it stays a twin its evaluated twin takes its slot unevaluated.

The index is a function of the *set* of genomes added: the twin is the most
similar one, ties broken by the smaller id, so a resumed run that rebuilds
the index from its committed generations decides exactly as the
uninterrupted run did. Hashes are CRC-32 and fixed multipliers, never
Python's per-process ``hash``. With 8 bands of 4 rows, a pair at Jaccard
0.9 is a candidate with probability 1 - (1 - 0.9**4)**8 > 0.999 (Broder,
1997, "On the resemblance and containment of documents"; Leskovec,
Rajaraman & Ullman, "Mining of Massive Datasets", ch. 3).
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
import zlib
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from project_o.errors import InvalidArgument
from project_o.evolution.genome import Genome

__all__ = ["DEFAULT_SIMILARITY", "RETRIES", "NoveltyIndex", "Twin", "normalise",
           "replace_twins"]

#: Jaccard similarity of shingles at or above which a candidate is a near duplicate. One
#: AST edit of the symbolic-regression agent (about 20 lines) is 0.76-0.99 similar to its
#: parent, median 0.92 (400 edits measured); this default only catches near-copies: a
#: larger program, where one edit moves the similarity less, can take a lower threshold
DEFAULT_SIMILARITY: Final = 0.99
#: a twin is mutated again this often before its evaluated twin takes its slot: rejection
#: sampling, as ShinkaEvolve resamples a rejected proposal a few times
RETRIES: Final = 3
#: tokens per shingle: order matters within three tokens, so `a - b` differs from `b - a`
SHINGLE: Final = 3
BANDS: Final = 8
ROWS: Final = 4
_PRIME: Final = (1 << 61) - 1
_TOKEN: Final = re.compile(r"\w+|[^\w\s]")


def _multipliers() -> list[tuple[int, int]]:
    # Fixed, not drawn: every process must hash alike. Derived from SHA-256 of the index.
    return [(int.from_bytes(hashlib.sha256(b"a%d" % i).digest()[:8]) % _PRIME | 1,
             int.from_bytes(hashlib.sha256(b"b%d" % i).digest()[:8]) % _PRIME)
            for i in range(BANDS * ROWS)]


_HASHES: Final = _multipliers()


def normalise(genome: Genome) -> str:
    """The genome's code as it behaves: no comments, docstrings or layout; params included."""
    parts = [f"# {name}\n{_normal_source(text)}" for name, text in sorted(genome.sources.items())]
    parts.append(json.dumps(dict(genome.params), sort_keys=True, default=repr))
    return "\n".join(parts)


def _normal_source(text: str) -> str:
    try:
        tree = ast.parse(text)
    except SyntaxError:  # a broken candidate still has a text to compare
        return "\n".join(line.strip() for line in text.splitlines() if line.strip())
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and _is_docstring(body[0]):
            node.body = body[1:] or [ast.Pass()]  # type: ignore[attr-defined]
    return ast.unparse(tree)


def _is_docstring(node: ast.stmt) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) \
        and isinstance(node.value.value, str)


@dataclass(frozen=True)
class Twin:
    """The evaluated genome a candidate duplicates, and how alike they are (1.0: equal)."""

    genome_id: str
    similarity: float


@dataclass(frozen=True)
class _Entry:
    digest: str  # its id is the index's for this content: the smallest added
    shingles: frozenset[int]


class NoveltyIndex:
    """Evaluated genomes by normalised content, to find a new candidate's twin."""

    def __init__(self, threshold: float = DEFAULT_SIMILARITY) -> None:
        if not 0.0 < threshold <= 1.0:
            raise InvalidArgument(f"the novelty similarity must be in (0, 1], got {threshold}")
        self.threshold = threshold
        self._by_hash: dict[str, str] = {}
        self._buckets: dict[tuple[int, int], list[_Entry]] = defaultdict(list)

    def __len__(self) -> int:
        return len(self._by_hash)

    def add(self, genome: Genome) -> None:
        """Remember ``genome`` as evaluated (its first id wins for equal content)."""
        text = normalise(genome)
        digest = _digest(text)
        if digest in self._by_hash:
            self._by_hash[digest] = min(self._by_hash[digest], genome.id)
            return
        self._by_hash[digest] = genome.id
        if self.threshold < 1.0:
            entry = _Entry(digest, _shingles(text))
            for key in _bands(entry.shingles):
                self._buckets[key].append(entry)

    def twin(self, genome: Genome) -> Twin | None:
        """The evaluated genome ``genome`` duplicates, or ``None`` if it is novel."""
        text = normalise(genome)
        same = self._by_hash.get(_digest(text))
        if same is not None:
            return Twin(same, 1.0)
        if self.threshold >= 1.0:
            return None
        shingles = _shingles(text)
        found = [Twin(self._by_hash[entry.digest], _jaccard(shingles, entry.shingles))
                 for key in _bands(shingles) for entry in self._buckets.get(key, ())]
        near = [twin for twin in found if twin.similarity >= self.threshold]
        # the most similar; among equals the smallest id, whatever order they were added in
        return min(near, key=lambda t: (-t.similarity, t.genome_id), default=None)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _shingles(text: str) -> frozenset[int]:
    tokens = _TOKEN.findall(text)
    grams = [tokens[i:i + SHINGLE] for i in range(max(1, len(tokens) - SHINGLE + 1))]
    return frozenset(zlib.crc32("\x00".join(gram).encode()) for gram in grams)


def _bands(shingles: frozenset[int]) -> list[tuple[int, int]]:
    if not shingles:
        return [(-1, 0)]
    signature = [min((a * s + b) % _PRIME for s in shingles) for a, b in _HASHES]
    return [(band, hash(tuple(signature[band * ROWS:(band + 1) * ROWS])))
            for band in range(BANDS)]


def _jaccard(a: frozenset[int], b: frozenset[int]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def replace_twins(index: NoveltyIndex, populations: Sequence[list[Genome]], seen: set[str],
                  genomes: Mapping[str, Genome], *, remake: Callable[[Genome], Genome],
                  tries: int = RETRIES) -> list[tuple[Genome, Twin]]:
    """Make each new genome novel or replace it by its twin, in place; every twin found.

    A new genome with an evaluated twin is remade (``remake``: a mutant of it,
    further from the twin) up to ``tries`` times; the last twin takes its slot
    when none is novel. ``seen`` are the ids already evaluated (no candidates),
    ``genomes`` holds every genome the index names. A genome found novel joins
    the index at once, so its siblings later in the populations meet it too.
    """
    found: list[tuple[Genome, Twin]] = []
    accepted: set[str] = set()
    for population in populations:
        for i, genome in enumerate(population):
            for attempt in range(tries + 1):
                if genome.id in seen or genome.id in accepted:
                    break
                twin = index.twin(genome)
                if twin is None:
                    index.add(genome)
                    accepted.add(genome.id)
                    break
                found.append((genome, twin))
                genome = remake(genome) if attempt < tries else genomes[twin.genome_id]
            population[i] = genome
    return found
